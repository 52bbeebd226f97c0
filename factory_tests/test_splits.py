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
