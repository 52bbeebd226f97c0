"""Self-training rows: which pool texts the embedding classifier labels, and how bad pool files are refused."""
import json

import numpy as np
import pytest

from factory.lib.baselines import embedding_logreg
from factory.lib.errors import DataError
from factory.lib.examples import load_texts
from factory.lib.pseudo_labels import out_of_fold_probabilities, pseudo_labelled_rows

SEEDS = [{"id": f"s{i}", "target": label} for i, label in enumerate(["a", "a", "b", "b"])]
SEED_EMBEDDINGS = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
POOL = [{"id": f"p{i}", "text": f"text {i}"} for i in range(5)]
# p0, p1 clearly a (p0 more so); p2 clearly b; p3 on the border; p4 leaning b.
POOL_EMBEDDINGS = np.array([[1.0, -0.2], [0.8, 0.2], [-0.2, 1.0], [0.5, 0.5], [0.3, 0.7]])


def test_the_most_confident_rows_of_each_label_up_to_the_quota():
    rows = pseudo_labelled_rows(SEEDS, SEED_EMBEDDINGS, POOL, POOL_EMBEDDINGS, rows_per_label=1, min_confidence=0.0)
    assert [(r["parent_id"], r["target"]) for r in rows] == [("p0", "a"), ("p2", "b")]
    assert rows[0] == {"id": "p0~pseudo", "text": "text 0", "target": "a", "source": "pseudo_label", "parent_id": "p0",
                       "generator": "embedding_logreg_pseudo_label", "label_confidence": rows[0]["label_confidence"]}
    assert 0.5 < rows[0]["label_confidence"] <= 1.0


def test_texts_below_the_confidence_floor_stay_out():
    everything = pseudo_labelled_rows(SEEDS, SEED_EMBEDDINGS, POOL, POOL_EMBEDDINGS, rows_per_label=10, min_confidence=0.0)
    assert {r["parent_id"] for r in everything} == {f"p{i}" for i in range(5)}
    border = next(r["label_confidence"] for r in everything if r["parent_id"] == "p3")
    confident = pseudo_labelled_rows(SEEDS, SEED_EMBEDDINGS, POOL, POOL_EMBEDDINGS, rows_per_label=10, min_confidence=border + 1e-3)
    assert "p3" not in {r["parent_id"] for r in confident} and len(confident) < len(everything)
    assert pseudo_labelled_rows(SEEDS, SEED_EMBEDDINGS, POOL, POOL_EMBEDDINGS, rows_per_label=10, min_confidence=1.01) == []


def test_out_of_fold_probabilities_never_come_from_a_fit_on_the_row_itself():
    rng = np.random.default_rng(0)
    a, b = rng.normal([3, 0], 0.3, (10, 2)), rng.normal([0, 3], 0.3, (10, 2))
    embeddings = np.vstack([a, b, [[0, 3]]])  # the last row says "a" but sits among the b rows
    targets = ["a"] * 10 + ["b"] * 10 + ["a"]
    probabilities = out_of_fold_probabilities(embeddings, targets, ["b", "unused", "a"])
    assert probabilities.shape == (21, 3) and np.allclose(probabilities.sum(axis=1), 1) and not probabilities[:, 1].any()
    assert probabilities[-1, 2] < 0.1 < 0.9 < probabilities[-1, 0]  # the misplaced row: b, as its neighbours say
    assert (probabilities[:10, 2] > 0.9).all() and (probabilities[10:20, 0] > 0.8).all()
    in_sample = embedding_logreg(embeddings, targets).predict_proba(embeddings[-1:])[0][0]
    assert probabilities[-1, 2] < 0.05 < in_sample  # fit on itself, the row pulls its own label up tenfold


def test_out_of_fold_probabilities_refuse_a_label_with_one_row():
    with pytest.raises(ValueError, match="need 2 rows of each label; c has 1"):
        out_of_fold_probabilities(np.eye(5), ["a", "a", "b", "b", "c"], ["a", "b", "c"])


@pytest.mark.parametrize("line, field, problem", [
    ({"id": "x"}, "text", "text must be a non-empty string, got None"),
    ({"text": "   "}, "text", "text must be a non-empty string"),
    ({"id": 7, "text": "hello"}, "id", "id must be a non-empty string, got 7"),
    ({"id": "u1", "text": "again"}, "id", "duplicate id 'u1' (first on line 1)"),
])
def test_a_bad_unlabeled_row_is_refused_naming_file_line_and_field(tmp_path, line, field, problem):
    path = tmp_path / "unlabeled.jsonl"
    path.write_text(json.dumps({"id": "u1", "text": "fine"}) + "\n" + json.dumps(line) + "\n")
    with pytest.raises(DataError) as error:
        load_texts(path)
    assert f"line 2, field '{field}'" in str(error.value) and problem in str(error.value) and "unlabeled.jsonl" in str(error.value)


def test_rows_without_ids_are_named_by_their_line(tmp_path):
    path = tmp_path / "unlabeled.jsonl"
    path.write_text(json.dumps({"text": "one"}) + "\n" + json.dumps({"text": "two"}) + "\n")
    assert load_texts(path) == [{"id": "line-1", "text": "one"}, {"id": "line-2", "text": "two"}]
