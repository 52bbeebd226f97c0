"""Self-training rows: in-domain texts without labels, labelled by the embedding classifier fit on the seeds, kept only
where it is most confident. The fine-tune learns what the stronger cheap baseline knows from texts it never saw."""
from __future__ import annotations

from collections import Counter

import numpy as np
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from factory.lib.baselines import embedding_classifier, embedding_logreg


def pseudo_labelled_rows(seeds: list[dict], seed_embeddings: np.ndarray, pool: list[dict], pool_embeddings: np.ndarray,
                         rows_per_label: int, min_confidence: float, seed: int = 0) -> list[dict]:
    """Up to `rows_per_label` pool rows for each label, the most confident first, none below `min_confidence`; each
    carries the classifier's confidence and the pool row it came from."""
    if rows_per_label <= 0 or not pool:
        return []
    model = embedding_logreg(seed_embeddings, [row["target"] for row in seeds], seed)
    probabilities = model.predict_proba(pool_embeddings)
    best, confidence = probabilities.argmax(axis=1), probabilities.max(axis=1)
    rows = []
    for index, label in enumerate(model.classes_):
        picked = [i for i in np.flatnonzero(best == index) if confidence[i] >= min_confidence]
        picked.sort(key=lambda i: (-confidence[i], pool[i]["id"]))
        rows += [{"id": f"{pool[i]['id']}~pseudo", "text": pool[i]["text"], "target": str(label), "source": "pseudo_label",
                  "parent_id": pool[i]["id"], "generator": "embedding_logreg_pseudo_label",
                  "label_confidence": round(float(confidence[i]), 4)} for i in picked[:rows_per_label]]
    return rows


def out_of_fold_probabilities(embeddings: np.ndarray, targets: list[str], labels: list[str], folds: int = 5,
                              seed: int = 0) -> np.ndarray:
    """Each row's probability for every label (columns in `labels` order) from the embedding classifier fit on the
    other folds, never on the row itself: soft targets to distil, which an in-sample fit would make near one-hot."""
    counts = Counter(targets)
    rare = sorted(label for label, n in counts.items() if n < 2)
    if rare:
        raise ValueError(f"out-of-fold probabilities need 2 rows of each label; {', '.join(rare)} has 1")
    cv = StratifiedKFold(n_splits=min(folds, min(counts.values())), shuffle=True, random_state=seed)
    probabilities = cross_val_predict(embedding_classifier(seed), embeddings, targets, cv=cv, method="predict_proba")
    columns = {label: i for i, label in enumerate(sorted(counts))}  # the classifier's classes_, sorted
    out = np.zeros((len(targets), len(labels)))
    for j, label in enumerate(labels):
        if label in columns:
            out[:, j] = probabilities[:, columns[label]]
    return out
