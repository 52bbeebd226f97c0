"""Error analysis the generation stage can act on: failure clusters and confusable label pairs."""
from __future__ import annotations

from collections import Counter

import numpy as np


def confusable_pairs(confusion: dict, min_rows: int = 2, min_rate: float = 0.2) -> list[dict]:
    """Label pairs confused with each other often (both directions, as a share of their rows): merge candidates."""
    labels, matrix = confusion["labels"], np.asarray(confusion["matrix"])
    support = matrix.sum(axis=1)
    pairs = []
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            mutual = int(matrix[i, j] + matrix[j, i])
            rows = int(support[i] + support[j])
            if mutual >= min_rows and rows and mutual / rows >= min_rate:
                pairs.append({"labels": [labels[i], labels[j]], "confused_rows": mutual, "rate": round(mutual / rows, 3),
                              "suggestion": f"merge {labels[i]} and {labels[j]}, or sharpen their descriptions and "
                                            "generate boundary rows for both"})
    return sorted(pairs, key=lambda p: -p["rate"])


def failure_clusters(failures: list[dict], embeddings: np.ndarray, max_clusters: int = 8, examples: int = 5,
                     seed: int = 0) -> list[dict]:
    """Wrong answers grouped by meaning (k-means on normalised embeddings), each with its commonest confusion, the
    rows nearest its centre, and how many targeted rows to generate (20-100, as the seeds ask)."""
    from sklearn.cluster import KMeans

    if not failures:
        return []
    k = max(1, min(max_clusters, len(failures) // 3))
    assignment = KMeans(n_clusters=k, random_state=seed, n_init=10).fit(embeddings) if k > 1 else None
    clusters = []
    for c in range(k):
        members = [i for i in range(len(failures)) if assignment is None or assignment.labels_[i] == c]
        if not members:
            continue
        centre = embeddings[members].mean(axis=0)
        nearest = sorted(members, key=lambda i: -float(embeddings[i] @ centre))[:examples]
        (target, predicted), _ = Counter((failures[i]["target"], failures[i]["prediction"]) for i in members).most_common(1)[0]
        clusters.append({
            "rows": len(members), "target": target, "predicted": predicted,
            "examples": [{"id": failures[i]["id"], "text": failures[i]["text"][:500]} for i in nearest],
            "suggested_rows": min(100, max(20, 10 * len(members))),
            "suggestion": f"generate rows of '{target}' that must not read as '{predicted}', near these examples",
        })
    return sorted(clusters, key=lambda c: -c["rows"])
