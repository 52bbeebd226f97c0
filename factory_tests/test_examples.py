import json

import pytest

from factory.lib.contracts import ClassificationContract
from factory.lib.errors import DataError
from factory.lib.examples import load_examples

CONTRACT = ClassificationContract(labels={"billing": "", "shipping": ""})
GOOD = {"id": "a", "text": "charged twice", "label": "billing"}


def write(tmp_path, *rows):
    path = tmp_path / "seeds.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("bad,field,message", [
    ({"id": "b", "text": "late parcel"}, "label", "missing field"),
    ({"id": "b", "label": "billing"}, "text", "missing field"),
    ({"id": "b", "text": "late parcel", "label": "refunds"}, "label", "unknown label 'refunds'"),
    ({"id": "b", "text": "   ", "label": "billing"}, "text", "text is empty"),
    ({"id": "a", "text": "other", "label": "billing"}, "id", "duplicate id 'a' (first on line 1)"),
    ({"id": 7, "text": "other", "label": "billing"}, "id", "id must be a non-empty string"),
])
def test_bad_rows_name_file_line_and_field(tmp_path, bad, field, message):
    path = write(tmp_path, GOOD, bad)
    with pytest.raises(DataError) as err:
        load_examples(path, CONTRACT, "seed")
    assert (err.value.path, err.value.line, err.value.field) == (str(path), 2, field)
    assert message in str(err.value)


def test_malformed_json_names_the_line(tmp_path):
    path = write(tmp_path, GOOD, '{"id": "b", "text": ')
    with pytest.raises(DataError, match=r"seeds.jsonl, line 2: malformed JSON"):
        load_examples(path, CONTRACT, "seed")


def test_good_rows_become_canonical_examples(tmp_path):
    path = write(tmp_path, GOOD, {"id": "b", "text": "late", "label": " shipping", "extra": 1})
    assert load_examples(path, CONTRACT, "seed") == [
        {"id": "a", "text": "charged twice", "target": "billing", "source": "seed"},
        {"id": "b", "text": "late", "target": "shipping", "source": "seed"},
    ]
