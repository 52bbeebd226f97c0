"""Self-training rows: in-domain texts without labels, labelled by the embedding classifier fit on the seeds, kept only
where it is most confident. The fine-tune learns what the stronger cheap baseline knows from texts it never saw."""
from __future__ import annotations

import numpy as np

from factory.lib.baselines import embedding_logreg


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
