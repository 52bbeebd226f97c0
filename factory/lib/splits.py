"""Seeded, stratified train/validation splits that keep a row's cluster (a seed, its variants and its near copies)
together."""
from __future__ import annotations

from collections import Counter

from sklearn.model_selection import train_test_split


def split_examples(rows: list[dict], validation_fraction: float, seed: int, stratum=lambda row: row["target"]) -> list[dict]:
    """Return rows with a `split` column; same rows and seed give the same split."""
    families: dict[str, list[dict]] = {}
    for row in sorted(rows, key=lambda r: r["id"]):
        families.setdefault(row.get("cluster") or row.get("parent_id") or row["id"], []).append(row)
    keys = sorted(families)
    strata = [stratum(families[k][0]) for k in keys]
    counts = Counter(strata)
    # Strata with one family cannot be split; they train.
    splittable = [k for k, s in zip(keys, strata) if counts[s] >= 2]
    validation: set[str] = set()
    n_val = round(len(splittable) * validation_fraction)
    n_strata = len({stratum(families[k][0]) for k in splittable})
    if splittable and n_val >= 1:
        stratify = [stratum(families[k][0]) for k in splittable] if n_val >= n_strata else None
        _, val_keys = train_test_split(splittable, test_size=n_val, random_state=seed, stratify=stratify)
        validation = set(val_keys)
    return [
        {**row, "split": "validation" if key in validation else "train"}
        for key in keys
        for row in families[key]
    ]
