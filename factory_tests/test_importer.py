import csv
import json
import random
from collections import Counter

import pytest

from factory.lib.errors import DataError
from factory.lib.examples import load_examples
from factory.lib.files import sha256_rows
from factory.lib.importer import ImportOptions, import_task
from factory.lib.task import EVAL_SETS, load_task


def write_csv(path, rows, fields):
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_large_jsonl_with_many_labels_and_an_original_split(tmp_path):
    rng = random.Random(0)
    labels = [f"intent_{i:03d}" for i in range(160)]
    rows = [{"utterance": f"message {n} about {label} {rng.random():.6f}", "intent": label,
             "part": "test" if n % 5 == 0 else "train"}
            for label in labels for n in range(70)]  # 11,200 rows
    source = tmp_path / "data.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    options = ImportOptions(text_field="utterance", label_field="intent", split_field="part",
                            dev_per_label=2, golden_per_label=1)
    folder = import_task(source, "big", tmp_path / "tasks", options)

    task = load_task(folder)
    contract = task.build_contract()
    assert len(contract.labels) == 160
    sets = {name: load_examples(task.path(name), contract, name) for name in ("seeds", *EVAL_SETS)}
    assert len(sets["test"]) == 160 * 14  # exactly the rows marked test
    assert Counter(r["target"] for r in sets["dev"]) == {label: 2 for label in labels}
    assert sum(len(v) for v in sets.values()) == len(rows)
    ids = [r["id"] for v in sets.values() for r in v]
    assert len(ids) == len(set(ids))
    assert sha256_rows(sets["golden"]) == task.golden_sha256
    assert "intent_000" not in task.system_prompt  # 160 labels are too many to list in every prompt


def test_csv_without_split_column_carves_test_per_label_reproducibly(tmp_path):
    rows = [{"text": f"row {i} {label}", "label": label} for label in ("a", "b") for i in range(30)]
    source = write_csv(tmp_path / "in.csv", rows, ["text", "label"])
    one = import_task(source, "t1", tmp_path / "tasks", ImportOptions(test_per_label=5, seed=1))
    two = import_task(source, "t2", tmp_path / "tasks", ImportOptions(test_per_label=5, seed=1))
    assert (one / "eval" / "test.jsonl").read_text() == (two / "eval" / "test.jsonl").read_text()
    task = load_task(one)
    assert Counter(r["target"] for r in load_examples(task.path("test"), task.build_contract(), "t")) == {"a": 5, "b": 5}
    assert "a, b" in task.system_prompt


@pytest.mark.parametrize("content,line,field,message", [
    ('{"text": "hi", "label": "a"}\n{"text": "x"}\n', 2, "label", "missing column"),
    ('{"text": "hi", "label": "a"}\n{"text": "", "label": "a"}\n', 2, "text", "empty text"),
    ('{"text": "hi", "label": "a"}\n{"text": "x", "label": " "}\n', 2, "label", "empty label"),
    ('{"text": "hi", "label": "a"}\nnot json\n', 2, None, "malformed JSON"),
])
def test_bad_input_names_line_and_field_and_writes_nothing(tmp_path, content, line, field, message):
    source = tmp_path / "in.jsonl"
    source.write_text(content)
    with pytest.raises(DataError) as err:
        import_task(source, "bad", tmp_path / "tasks", ImportOptions())
    assert (err.value.line, err.value.field) == (line, field) and message in str(err.value)
    assert not (tmp_path / "tasks").exists() or not any((tmp_path / "tasks").iterdir())


def test_duplicate_ids_and_existing_tasks_are_refused(tmp_path):
    source = write_csv(tmp_path / "in.csv", [{"id": "1", "text": "a", "label": "x"}, {"id": "1", "text": "b", "label": "x"}],
                       ["id", "text", "label"])
    with pytest.raises(DataError, match="line 3, field 'id': duplicate id '1'"):
        import_task(source, "dup", tmp_path / "tasks", ImportOptions(id_field="id"))
    (tmp_path / "tasks" / "taken").mkdir(parents=True)
    with pytest.raises(DataError, match="frozen"):
        import_task(source, "taken", tmp_path / "tasks", ImportOptions())


def test_a_separate_test_file_becomes_the_test_set(tmp_path):
    train = tmp_path / "train.jsonl"
    test = tmp_path / "test.jsonl"
    train.write_text("".join(json.dumps({"text": f"train {i} {lab}", "label": lab}) + "\n" for lab in "ab" for i in range(12)))
    test.write_text("".join(json.dumps({"text": f"test {i} {lab}", "label": lab}) + "\n" for lab in "ab" for i in range(3)))
    task = load_task(import_task(train, "two", tmp_path / "tasks", ImportOptions(dev_per_label=2, golden_per_label=1),
                                 test_source=test))
    rows = load_examples(task.path("test"), task.build_contract(), "test")
    assert sorted(r["text"] for r in rows) == sorted(f"test {i} {lab}" for lab in "ab" for i in range(3))
    assert len(load_examples(task.path("seeds"), task.build_contract(), "seed")) == 24 - 4 - 2


def test_answer_words_make_the_model_answer_in_words_and_clashing_words_are_refused(tmp_path):
    rows = [{"text": f"row {i} {label}", "label": label} for label in ("card_arrival", "top-up_failed") for i in range(12)]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = load_task(import_task(source, "worded", tmp_path / "tasks", ImportOptions(test_per_label=3, answer_words=True)))
    contract = task.build_contract()
    assert contract.render("card_arrival") == "card arrival" and contract.render("top-up_failed") == "top up failed"
    assert "card arrival, top up failed" in task.system_prompt  # the prompt lists what the model is to answer
    assert {r["target"] for r in load_examples(task.path("seeds"), contract, "seed")} == {"card_arrival", "top-up_failed"}

    clash = tmp_path / "clash.jsonl"
    clash.write_text("".join(json.dumps({"text": f"row {i} {lab}", "label": lab}) + "\n" for lab in ("top_up", "top-up") for i in range(12)))
    with pytest.raises(DataError, match="field 'label': labels 'top-up' and 'top_up' have the same answer 'top up'"):
        import_task(clash, "clash", tmp_path / "tasks", ImportOptions(test_per_label=3, answer_words=True))
    assert not (tmp_path / "tasks" / "clash").exists()


def test_distinct_first_words_give_every_answer_its_own_first_word(tmp_path):
    labels = ("card_arrival", "card_linking", "card_not_working", "lost_or_stolen_phone", "top_up_failed", "top_up_limits")
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": f"row {i} {lab}", "label": lab}) + "\n" for lab in labels for i in range(12)))
    task = load_task(import_task(source, "firsts", tmp_path / "tasks", ImportOptions(test_per_label=3, distinct_first_words=True)))
    contract = task.build_contract()
    answers = {label: contract.render(label) for label in labels}
    assert len({a.split()[0] for a in answers.values()}) == len(labels)
    for label, answer in answers.items():  # a rotation of the label's words, so nothing is lost
        words = label.replace("_", " ").split()
        assert any(answer.split() == words[i:] + words[:i] for i in range(len(words))), (label, answer)
        assert contract.parse_answer(answer) == label
    assert answers["lost_or_stolen_phone"] == "lost or stolen phone"  # already first: left as written
    assert answers["card_not_working"].split()[0] in {"card", "working"}  # never the function word `not`
    assert sum(a == label.replace("_", " ") for label, a in answers.items()) == 3  # as few moved as possible

    impossible = tmp_path / "impossible.jsonl"
    impossible.write_text("".join(json.dumps({"text": f"row {i} {lab}", "label": lab}) + "\n"
                                  for lab in ("top_up", "up_top", "top_top_up") for i in range(12)))
    with pytest.raises(DataError, match=r"field 'label': labels \['.*'\] cannot each start with a word no other answer"):
        import_task(impossible, "impossible", tmp_path / "tasks", ImportOptions(test_per_label=3, distinct_first_words=True))
    assert not (tmp_path / "tasks" / "impossible").exists()
