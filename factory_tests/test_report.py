import pytest

from factory.lib.report import (
    CANDIDATE,
    best_baseline,
    candidate_release_gates,
    comparison_rows,
    failed_gates,
    markdown_table,
    release_choice,
    release_gates,
)
from factory.lib.task import ReleaseGates

SETS = {"test": {"accuracy": 0.8, "macro_f1": 0.7, "invalid_rate": 0.02, "latency_p95_ms": 80.0,
                 "per_label": {"a": {"recall": 0.9}, "b": {"recall": 0.5}}},
        "golden": {"accuracy": 0.9, "macro_f1": 0.9, "invalid_rate": 0.1}}


def test_release_gates_compare_each_value_with_its_threshold():
    gates = release_gates(SETS, ReleaseGates(min_test_macro_f1=0.75, max_invalid_rate=0.05, golden_min_accuracy=0.9))
    assert {n: (g["value"], g["passed"]) for n, g in gates.items()} == {
        "min_test_macro_f1": (0.7, False), "max_invalid_rate": (0.1, False), "golden_min_accuracy": (0.9, True),
        "max_golden_critical_failures": (0, True)}
    assert failed_gates(gates) == ["min_test_macro_f1 (0.7 vs 0.75)", "max_invalid_rate (0.1 vs 0.05)"]


@pytest.mark.parametrize("baseline_score, passed", [(0.69, True), (0.70, True), (0.71, False)])
def test_the_served_model_must_reach_the_best_baseline(baseline_score, passed):
    gates = release_gates(SETS, ReleaseGates(), best=("tfidf_logreg", baseline_score))
    assert gates["beat_best_baseline"]["passed"] is passed and gates["beat_best_baseline"]["baseline"] == "tfidf_logreg"
    assert "beat_best_baseline" not in release_gates(SETS, ReleaseGates(beat_best_baseline=False), best=("x", 0.9))


def test_a_label_whose_recall_fell_too_far_since_the_last_release_fails():
    previous = {"per_label": {"a": {"recall": 0.9}, "b": {"recall": 0.7}}}
    gates = release_gates(SETS, ReleaseGates(max_class_recall_drop=0.1), previous=previous)
    assert gates["max_class_recall_drop"] == {"value": pytest.approx(0.2), "threshold": 0.1, "passed": False, "label": "b"}
    assert release_gates(SETS, ReleaseGates(max_class_recall_drop=0.25), previous=previous)["max_class_recall_drop"]["passed"]
    assert "max_class_recall_drop" not in release_gates(SETS, ReleaseGates())  # no previous release: nothing to compare


def test_latency_and_critical_golden_failures_are_gated_when_asked():
    gates = release_gates(SETS, ReleaseGates(max_latency_p95_ms=50), golden_critical_failures=1)
    assert not gates["max_latency_p95_ms"]["passed"] and not gates["max_golden_critical_failures"]["passed"]
    assert "max_latency_p95_ms" not in release_gates(SETS, ReleaseGates())


def test_the_best_baseline_is_chosen_among_baselines_that_answered_every_test_row():
    models = {"majority": {"test": {"macro_f1": 0.1, "rows": 10}}, "tfidf_logreg": {"test": {"macro_f1": 0.6, "rows": 10}},
              "base_few_shot": {"test": {"macro_f1": 0.9, "rows": 4}},  # a sample: not comparable
              "finetuned_gguf_q8_0": {"test": {"macro_f1": 0.95, "rows": 10}},
              "previous_release": {"test": {"macro_f1": 0.99, "rows": 10}}}
    assert best_baseline(models, test_rows=10) == "tfidf_logreg"


def test_table_keeps_the_given_order_and_skips_models_without_the_set():
    models = {"b": {"test": {"accuracy": 0.5, "latency_p50_ms": 12.4}}, "a": {"test": {"accuracy": 0.25}}, "c": {"dev": {}}}
    rows = comparison_rows(models, order=["a", "b", "c"])
    assert [r["model"] for r in rows] == ["a", "b"]
    table = markdown_table(rows)
    assert table.splitlines()[2] == "| a | 0.250 |  |" and table.splitlines()[3] == "| b | 0.500 | 12.4 |"


def _scored(macro_f1: float, golden: float = 1.0) -> dict:
    return {"test": {"macro_f1": macro_f1, "rows": 10, "invalid_rate": 0.0}, "golden": {"accuracy": golden}}


@pytest.mark.parametrize("candidate, golden, released", [
    (0.85, 1.0, CANDIDATE),  # beats the fine-tune and TF-IDF: released in the fine-tune's place
    (0.85, 0.4, None),       # beats them but fails the golden gate: nothing
    (0.78, 1.0, None),       # under the fine-tune (whatever beat_best_baseline says): nothing
])
def test_the_encoder_candidate_is_released_only_when_it_passes_every_gate_and_beats_the_fine_tune(candidate, golden, released):
    models = {"tfidf_logreg": _scored(0.77), "minilm_logreg": _scored(0.86), "finetuned_gguf_q8_0": _scored(0.80),
              CANDIDATE: _scored(candidate, golden)}
    task_gates = ReleaseGates(golden_min_accuracy=0.5, beat_best_baseline=False)
    fine_tune = release_gates(models["finetuned_gguf_q8_0"], task_gates.model_copy(update={"beat_best_baseline": True}),
                              ("minilm_logreg", 0.86))
    gates = candidate_release_gates(models, "finetuned_gguf_q8_0", task_gates, None, 0)
    # Its rival is the best of the rest: the fine-tune here, never the baseline it is itself.
    assert gates["beat_best_baseline"]["baseline"] == "finetuned_gguf_q8_0" and gates["beat_best_baseline"]["threshold"] == 0.80
    choice = release_choice("finetuned_gguf_q8_0", fine_tune, gates)
    assert choice["model"] == released and choice["kind"] == ("encoder" if released else None)
    assert "beat_best_baseline (0.8 vs 0.86)" in choice["reason"] or not released
    # A fine-tune that passes is released whatever the candidate scores.
    assert release_choice("finetuned_gguf_q8_0", {}, gates)["model"] == "finetuned_gguf_q8_0"
