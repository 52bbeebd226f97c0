"""Choosing the quantization to serve from evaluation, not habit."""
from __future__ import annotations


def choose_quantization(dev_scores: dict[str, float], sizes: dict[str, int], tolerance: float) -> dict:
    """The smallest file whose dev score is within `tolerance` of the best one, and why."""
    best = max(dev_scores.values())
    eligible = [kind for kind, score in dev_scores.items() if score >= best - tolerance]
    chosen = min(eligible, key=lambda kind: sizes[kind])
    return {"chosen": chosen, "dev_scores": dev_scores, "bytes": sizes, "tolerance": tolerance,
            "reason": f"smallest file within {tolerance} of the best dev score ({best:.3f}): {chosen} scores "
                      f"{dev_scores[chosen]:.3f} at {sizes[chosen] / 1e6:.1f} MB"}
