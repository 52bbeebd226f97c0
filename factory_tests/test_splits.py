from collections import Counter

from factory.lib.splits import split_examples


def rows():
    out = []
    for label in ("a", "b", "c"):
        for i in range(10):
            out.append({"id": f"{label}{i}", "text": "t", "target": label})
            out.append({"id": f"{label}{i}~aug0", "text": "t", "target": label, "parent_id": f"{label}{i}"})
    return out


def test_split_is_seeded_and_stratified():
    first = split_examples(rows(), 0.2, seed=3)
    assert first == split_examples(list(reversed(rows())), 0.2, seed=3)
    assert first != split_examples(rows(), 0.2, seed=4)
    validation = Counter(r["target"] for r in first if r["split"] == "validation")
    assert validation == {"a": 4, "b": 4, "c": 4}  # 2 families x 2 rows per label


def test_a_family_never_straddles_the_split():
    split_of = {r["id"]: r["split"] for r in split_examples(rows(), 0.3, seed=0)}
    for row_id, split in split_of.items():
        if "~" in row_id:
            assert split == split_of[row_id.split("~")[0]]


def test_labels_with_one_family_stay_in_train():
    data = rows() + [{"id": "lonely", "text": "t", "target": "z"}]
    result = {r["id"]: r["split"] for r in split_examples(data, 0.2, seed=0)}
    assert result["lonely"] == "train"


def test_near_copy_clusters_never_straddle_train_and_validation():
    import random

    from factory.lib.contracts import ClassificationContract
    from factory.lib.gates import apply_gates

    words = "parcel invoice refund card charge delivery address courier receipt tax order subscription late broken".split()
    rng = random.Random(0)
    candidates = []
    for label in ("billing", "shipping"):
        for i in range(12):
            base = " ".join(rng.sample(words, 8)) + f" {label} {i}"
            candidates.append({"id": f"{label}-{i}", "text": base, "target": label, "source": "seed"})
            candidates.append({"id": f"{label}-{i}-copy", "text": base + " thanks", "target": label, "source": "teacher"})
    accepted, _ = apply_gates(candidates, ClassificationContract(labels={"billing": "", "shipping": ""}), [], "prompt")
    assert len({r["cluster"] for r in accepted}) < len(accepted)  # the copies joined their originals' clusters
    for seed in range(5):
        split_rows = split_examples(accepted, 0.3, seed=seed)
        sides: dict[str, set] = {}
        for row in split_rows:
            sides.setdefault(row["cluster"], set()).add(row["split"])
        assert all(len(s) == 1 for s in sides.values())
        assert {r["split"] for r in split_rows} == {"train", "validation"}
    # Without clusters the same rows would straddle: the test can fail.
    unclustered = split_examples([{k: v for k, v in r.items() if k != "cluster"} for r in accepted], 0.3, seed=0)
    split_of = {r["id"]: r["split"] for r in unclustered}
    assert any(split_of[f"{r['id']}-copy"] != r["split"] for r in unclustered if f"{r['id']}-copy" in split_of)
