import numpy as np
import pytest

from factory.lib.analysis import confusable_pairs, failure_clusters
from factory.lib.metrics import cost_per_1k, expected_calibration_error, mcnemar, per_label
from factory.lib.quantization import choose_quantization


def test_per_label_scores_and_the_confusion_matrix_count_invalid_answers():
    detail = per_label(["a", "a", "b", "b"], ["a", "b", "b", None], ["a", "b"])
    assert detail["per_label"]["a"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert detail["confusion"] == {"labels": ["a", "b", "<invalid>"], "matrix": [[1, 1, 0], [0, 1, 1], [0, 0, 0]]}


def test_expected_calibration_error():
    assert expected_calibration_error([True, True], [1.0, 1.0]) == 0.0
    assert expected_calibration_error([False, False], [0.95, 0.95]) == pytest.approx(0.95)
    # two bins: 0.9 confident and right half the time (gap 0.4), 0.3 confident and never right (gap 0.3)
    assert expected_calibration_error([True, False, False], [0.9, 0.9, 0.3]) == pytest.approx((2 * 0.4 + 0.3) / 3)


def test_mcnemar_counts_only_the_disagreements():
    result = mcnemar(list("aaaaaaaaaa"), list("aaaaaaaaab"), list("bbbbbbbbba"))
    assert (result["only_first_right"], result["only_second_right"]) == (9, 1)
    assert result["p_value"] == pytest.approx(0.021484375)
    assert mcnemar(["a"], ["a"], ["a"])["p_value"] == 1.0


def test_cost_per_1k_requests_from_cpu_seconds():
    assert cost_per_1k(0.036, 0.10) == pytest.approx(0.001)


def test_the_smallest_quantization_within_tolerance_is_chosen():
    sizes = {"q8_0": 145, "q5_k_m": 110, "q4_k_m": 105}
    assert choose_quantization({"q8_0": 0.80, "q5_k_m": 0.795, "q4_k_m": 0.70}, sizes, 0.01)["chosen"] == "q5_k_m"
    assert choose_quantization({"q8_0": 0.80, "q5_k_m": 0.795, "q4_k_m": 0.70}, sizes, 0.0)["chosen"] == "q8_0"
    assert choose_quantization({"q8_0": 0.80, "q5_k_m": 0.80, "q4_k_m": 0.80}, sizes, 0.0)["chosen"] == "q4_k_m"


def test_confusable_pairs_need_mutual_confusion():
    confusion = {"labels": ["a", "b", "c"], "matrix": [[3, 2, 0], [2, 3, 0], [1, 0, 9]]}
    pairs = confusable_pairs(confusion)
    assert [p["labels"] for p in pairs] == [["a", "b"]] and pairs[0]["confused_rows"] == 4


def test_failures_cluster_by_meaning_with_their_commonest_confusion():
    failures = [{"id": f"r{i}", "text": f"t{i}", "target": t, "prediction": p}
                for i, (t, p) in enumerate([("a", "b")] * 4 + [("c", "d")] * 3)]
    embeddings = np.array([[1.0, 0.0]] * 4 + [[0.0, 1.0]] * 3)
    clusters = failure_clusters(failures, embeddings, max_clusters=2)
    assert [(c["target"], c["predicted"], c["rows"]) for c in clusters] == [("a", "b", 4), ("c", "d", 3)]
    assert clusters[0]["suggested_rows"] == 40 and len(clusters[0]["examples"]) == 4
