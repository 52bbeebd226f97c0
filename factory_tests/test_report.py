from factory.lib.report import comparison_rows, markdown_table, release_gates
from factory.lib.task import ReleaseGates

SETS = {"test": {"accuracy": 0.8, "macro_f1": 0.7, "invalid_rate": 0.02},
        "golden": {"accuracy": 0.9, "macro_f1": 0.9, "invalid_rate": 0.1}}


def test_release_gates_compare_each_value_with_its_threshold():
    gates = release_gates(SETS, ReleaseGates(min_test_macro_f1=0.75, max_invalid_rate=0.05, golden_min_accuracy=0.9))
    assert {n: (g["value"], g["passed"]) for n, g in gates.items()} == {
        "min_test_macro_f1": (0.7, False), "max_invalid_rate": (0.1, False), "golden_min_accuracy": (0.9, True)}


def test_table_keeps_the_given_order_and_skips_models_without_the_set():
    models = {"b": {"test": {"accuracy": 0.5, "latency_p50_ms": 12.4}}, "a": {"test": {"accuracy": 0.25}}, "c": {"dev": {}}}
    rows = comparison_rows(models, order=["a", "b", "c"])
    assert [r["model"] for r in rows] == ["a", "b"]
    table = markdown_table(rows)
    assert table.splitlines()[2] == "| a | 0.250 |  |" and table.splitlines()[3] == "| b | 0.500 | 12 |"
