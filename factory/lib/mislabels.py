"""Likely mislabels by confident learning (cleanlab) over out-of-fold predictions on sentence embeddings.

Imported historical labels carry the old system's mistakes; a row flagged here goes to a review file, not silently
into training.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Suspect:
    index: int  # position in the rows given
    given: str
    suggested: str  # the label the out-of-fold classifier prefers
    self_confidence: float  # the classifier's probability of the given label


def likely_mislabels(embeddings: np.ndarray, targets: list[str], seed: int = 0, folds: int = 5) -> list[Suspect]:
    """Rows whose given label the out-of-fold classifier doubts, most doubtful first.

    Labels with fewer rows than two folds cannot be judged and are never flagged (their rows still train the
    classifier for the others)."""
    from cleanlab.filter import find_label_issues
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    names = sorted(set(targets))
    counts = {name: targets.count(name) for name in names}
    judged = [name for name in names if counts[name] >= 2]
    if len(judged) < 2:
        return []
    n_folds = min(folds, min(counts[name] for name in judged))
    keep = np.array([counts[t] >= 2 for t in targets])
    index_of = {name: k for k, name in enumerate(judged)}
    labels = np.array([index_of[t] for t, kept in zip(targets, keep) if kept])
    features = embeddings[keep]
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    pred_probs = cross_val_predict(LogisticRegression(max_iter=2000, C=10.0), features, labels, cv=splitter,
                                   method="predict_proba")
    # n_jobs=1: cleanlab's process pool forks, which deadlocks in a process that already runs threads (torch, Dagster).
    ranked = find_label_issues(labels=labels, pred_probs=pred_probs, return_indices_ranked_by="self_confidence", n_jobs=1)
    original = np.nonzero(keep)[0]
    return [Suspect(index=int(original[k]), given=judged[labels[k]], suggested=judged[int(pred_probs[k].argmax())],
                    self_confidence=round(float(pred_probs[k, labels[k]]), 4)) for k in ranked]
