"""The eval report: every model side by side on the same rows, and the release gates."""
from __future__ import annotations


def headline(scores: dict) -> float:
    """The task's main score: macro-F1 for classification, exact match for extraction."""
    return scores.get("macro_f1", scores.get("exact_match", 0.0))


def release_gates(gguf_sets: dict, gates) -> dict[str, dict]:
    """Each gate of the task's release_gates against the exported model's scores."""
    golden = gguf_sets.get("golden", {})
    values = {
        "min_test_macro_f1": headline(gguf_sets.get("test", {})),
        "max_invalid_rate": max((s.get("invalid_rate", 0.0) for s in gguf_sets.values()), default=0.0),
        "golden_min_accuracy": golden.get("accuracy", golden.get("exact_match", 0.0)),
    }
    result = {}
    for name, value in values.items():
        threshold = getattr(gates, name)
        passed = value <= threshold if name.startswith("max_") else value >= threshold
        result[name] = {"value": value, "threshold": threshold, "passed": passed}
    return result


def comparison_rows(models: dict[str, dict], set_name: str = "test", order: list[str] | None = None) -> list[dict]:
    """One row a model, in `order` (baselines first, the exported model last): its scores on one eval set."""
    rows = []
    for name in order or list(models):
        sets = models[name]
        scores = sets.get(set_name)
        if scores:
            rows.append({"model": name, **{k: v for k, v in scores.items() if isinstance(v, (int, float))}})
    return rows


def markdown_table(rows: list[dict], columns: tuple[str, ...] = ("accuracy", "macro_f1", "invalid_rate", "latency_p50_ms")) -> str:
    present = [c for c in columns if any(c in r for r in rows)]
    lines = ["| model | " + " | ".join(present) + " |", "|---" * (len(present) + 1) + "|"]
    for row in rows:
        cells = [f"{row[c]:.3f}" if isinstance(row.get(c), float) and not c.endswith("_ms") else
                 (f"{row[c]:.0f}" if c in row else "") for c in present]
        lines.append(f"| {row['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
