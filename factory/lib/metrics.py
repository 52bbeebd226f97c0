"""Scores beyond the contract's headline: per-label detail, calibration, latency, cost and paired tests."""
from __future__ import annotations

import statistics

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

INVALID = "<invalid>"


def per_label(targets: list[str], predictions: list[str | None], labels: list[str]) -> dict:
    """Per-label precision, recall, F1 and support, and the confusion matrix over `labels` (+ invalid answers)."""
    scored = [p if p is not None else INVALID for p in predictions]
    precision, recall, f1, support = precision_recall_fscore_support(targets, scored, labels=labels, zero_division=0)
    axis = labels + ([INVALID] if INVALID in scored else [])
    matrix = confusion_matrix(targets, scored, labels=axis)
    return {
        "per_label": {label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                      for label, p, r, f, s in zip(labels, precision, recall, f1, support)},
        "confusion": {"labels": axis, "matrix": matrix.tolist()},
    }


def expected_calibration_error(correct: list[bool], confidences: list[float], bins: int = 10) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by rows; sklearn has only the binary
    calibration curve, not this multi-class summary."""
    if not correct:
        return 0.0
    conf, hit = np.asarray(confidences, dtype=float), np.asarray(correct, dtype=float)
    which = np.minimum((conf * bins).astype(int), bins - 1)
    return float(sum(abs(hit[which == b].mean() - conf[which == b].mean()) * (which == b).sum()
                     for b in range(bins) if (which == b).any()) / len(conf))


def latency_summary(latencies_ms: list[float]) -> dict:
    ordered = sorted(latencies_ms)
    return {"latency_p50_ms": statistics.median(ordered), "latency_p95_ms": ordered[max(0, round(0.95 * len(ordered)) - 1)]}


def cost_per_1k(cpu_seconds_per_request: float, price_per_cpu_hour: float) -> float:
    """Cost model for a local model: the CPU time a request takes, priced per CPU-hour."""
    return cpu_seconds_per_request * 1000 * price_per_cpu_hour / 3600


def mcnemar(targets: list[str], first: list[str | None], second: list[str | None]) -> dict:
    """Exact McNemar test on paired answers: rows only the first got right against rows only the second did."""
    from scipy.stats import binomtest

    only_first = sum(t == a != b for t, a, b in zip(targets, first, second))
    only_second = sum(t == b != a for t, a, b in zip(targets, first, second))
    p = binomtest(only_first, only_first + only_second).pvalue if only_first + only_second else 1.0
    return {"rows": len(targets), "only_first_right": only_first, "only_second_right": only_second, "p_value": float(p)}


def score_predictions(predictions: list[dict], contract, wall_seconds: float, cpu_seconds: float) -> dict:
    """The contract's scores, per-label detail, calibration where there are confidences, latency and throughput.
    Each prediction: id, target, prediction (None when invalid), latency_ms, and optionally confidence, abstained."""
    targets, predicted = [p["target"] for p in predictions], [p["prediction"] for p in predictions]
    scores = contract.metrics(targets, predicted)
    labels = getattr(contract, "labels", None)
    if labels:
        scores.update(per_label(targets, predicted, sorted(labels)))
    if all("confidence" in p for p in predictions):
        scores["ece"] = expected_calibration_error([t == p for t, p in zip(targets, predicted)],
                                                   [p["confidence"] for p in predictions])
        scores["abstained_rate"] = sum(p.get("abstained", False) for p in predictions) / len(predictions)
    timed = [p["latency_ms"] for p in predictions if p.get("latency_ms") is not None]
    if timed:
        scores.update(latency_summary(timed))
    scores.update(rows=len(predictions), requests_per_s=len(timed) / wall_seconds if wall_seconds else 0.0,
                  cpu_seconds_per_request=cpu_seconds / max(len(timed), 1))
    return scores
