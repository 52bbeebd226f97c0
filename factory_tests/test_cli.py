"""The commands a user types: import a task, add versions; errors name the file, line and field."""
import json

from factory.cli import main
from factory.lib.task import load_task


def test_import_then_new_versions(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FACTORY_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    source = tmp_path / "labelled.jsonl"
    rows = [{"text": f"message {i} for {label}", "label": label} for label in ("a", "b", "c") for i in range(20)]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))

    assert main(["task", "import", str(source), "--name", "mine", "--test-per-label", "4"]) == 0
    assert load_task(tmp_path / "data" / "tasks" / "mine").name == "mine"
    assert main(["version", "new", "--task", "mine"]) == 0
    assert main(["version", "new", "--task", "mine"]) == 0
    assert capsys.readouterr().out.splitlines()[-2:] == ["mine.v1", "mine.v2"]

    import dagster as dg

    assert dg.DagsterInstance.get().get_dynamic_partitions("dataset_version") == ["mine.v1", "mine.v2"]


def test_bad_import_exits_2_naming_the_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FACTORY_DATA_ROOT", str(tmp_path / "data"))
    source = tmp_path / "bad.jsonl"
    source.write_text('{"text": "ok", "label": "a"}\n{"text": "missing label"}\n')
    assert main(["task", "import", str(source), "--name", "bad"]) == 2
    assert "bad.jsonl, line 2, field 'label': missing column" in capsys.readouterr().err


def test_new_version_of_an_unknown_task_fails_cleanly(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FACTORY_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    assert main(["version", "new", "--task", "nope"]) == 2
    assert "task.yaml not found" in capsys.readouterr().err
