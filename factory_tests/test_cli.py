"""The commands a user types: import a task, add versions; errors name the file, line and field."""
import json

import pytest

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


def test_import_reports_rejected_rows_and_refuses_a_wrong_column_with_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FACTORY_DATA_ROOT", str(tmp_path / "data"))
    source = tmp_path / "some.jsonl"
    rows = [{"text": f"message {i} for {label}", "label": label} for label in ("a", "b", "c") for i in range(12)]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"text": "missing label"}\n')
    assert main(["task", "import", str(source), "--name", "some"]) == 0
    assert "1 rows rejected, each with its line and reason, in " in capsys.readouterr().out
    rejected = json.loads((tmp_path / "data" / "tasks" / "some" / "import_rejected.jsonl").read_text())
    assert (rejected["line"], rejected["field"], rejected["reason"]) == (37, "label", "missing field")
    source.write_text('{"body": "ok", "label": "a"}\n')
    assert main(["task", "import", str(source), "--name", "bad"]) == 2
    assert "some.jsonl, field 'text': missing column; columns present: ['body', 'label']" in capsys.readouterr().err


def test_new_version_of_an_unknown_task_fails_cleanly(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FACTORY_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    assert main(["version", "new", "--task", "nope"]) == 2
    assert "task.yaml not found" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["../../x", "/tmp/abs", "a/b", "..", "Mixed", "with space", "dots.v1", ""])
def test_import_refuses_names_that_could_escape_or_that_versions_would_refuse(tmp_path, monkeypatch, capsys, name):
    monkeypatch.setenv("FACTORY_DATA_ROOT", str(tmp_path / "root" / "data"))
    source = tmp_path / "labelled.jsonl"
    source.write_text("".join(json.dumps({"text": f"message {i}", "label": "ab"[i % 2]}) + "\n" for i in range(40)))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main(["task", "import", str(source), "--name", name]) == 2
    assert f"--name: bad task name {name!r}" in capsys.readouterr().err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written anywhere


@pytest.mark.parametrize("args", [["version", "new", "--task", "../x"], ["run", "../x.v1"], ["eval", "x.v1/../../y.v1"]])
def test_version_and_run_commands_refuse_bad_names(tmp_path, monkeypatch, capsys, args):
    monkeypatch.setenv("FACTORY_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    assert main(args) == 2
    assert "bad" in capsys.readouterr().err
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").rglob("*.yaml"))


def test_storage_refuses_a_task_or_partition_outside_the_data_root(tmp_path):
    from factory.integrations.storage import FactoryStorage
    from factory.lib.errors import DataError

    storage = FactoryStorage(data_root=str(tmp_path))
    with pytest.raises(DataError, match="bad task name"):
        storage.task_dir("../elsewhere")
    with pytest.raises(DataError, match="bad dataset version"):
        storage.asset_dir("../x.v1", "seed_examples")


def test_a_task_whose_yaml_name_differs_from_its_folder_is_refused(tiny_task):
    from factory.lib.errors import DataError
    from factory.lib.task import load_task

    spec = tiny_task / "task.yaml"
    spec.write_text(spec.read_text().replace("name: tiny", "name: other"))
    with pytest.raises(DataError, match="task.yaml, field 'name': name is 'other' but the folder is 'tiny'"):
        load_task(tiny_task)
