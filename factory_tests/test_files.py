import pytest

from factory.lib.errors import DataError
from factory.lib.files import atomic_dir, read_jsonl, sha256_rows, write_jsonl


def test_read_jsonl_names_file_and_line_of_malformed_json(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"id": "a"}\n\n{"id": "b",\n')
    with pytest.raises(DataError) as err:
        read_jsonl(path)
    assert err.value.line == 3 and str(path) in str(err.value) and "malformed JSON" in str(err.value)


def test_read_jsonl_rejects_non_objects(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('["a list"]\n')
    with pytest.raises(DataError, match="line 1: expected a JSON object"):
        read_jsonl(path)


def test_write_jsonl_round_trips_without_line_numbers(tmp_path):
    rows = [{"id": "a", "text": "é", "_line": 4}]
    path = write_jsonl(tmp_path / "x" / "rows.jsonl", rows)
    assert read_jsonl(path) == [{"id": "a", "text": "é", "_line": 1}]
    assert [p.name for p in path.parent.iterdir()] == ["rows.jsonl"]


def test_atomic_dir_keeps_the_old_folder_when_the_block_fails(tmp_path):
    final = tmp_path / "artifact"
    with atomic_dir(final) as scratch:
        (scratch / "done.txt").write_text("v1")
    with pytest.raises(RuntimeError), atomic_dir(final) as scratch:
        (scratch / "done.txt").write_text("half")
        raise RuntimeError("killed")
    assert (final / "done.txt").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifact"]


def test_sha256_rows_ignores_order_but_not_content():
    a = [{"id": "1", "text": "x", "target": "t"}, {"id": "2", "text": "y", "target": "u"}]
    assert sha256_rows(a) == sha256_rows(list(reversed(a)))
    assert sha256_rows(a) != sha256_rows([{**a[0], "target": "u"}, a[1]])
