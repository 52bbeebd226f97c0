from pathlib import Path

import pytest
import yaml

from factory.lib.errors import DataError
from factory.lib.examples import load_examples
from factory.lib.files import sha256_rows
from factory.lib.task import EVAL_SETS, load_task

SHIPPED = Path(__file__).resolve().parents[1] / "data" / "tasks" / "support_email"


def test_shipped_task_meets_its_own_contract_and_golden_lock():
    task = load_task(SHIPPED)
    contract = task.build_contract()
    assert 12 <= len(contract.labels) <= 16
    seeds = load_examples(task.path("seeds"), contract, "seed")
    sets = {name: load_examples(task.path(name), contract, name) for name in EVAL_SETS}
    assert len(seeds) >= 200
    assert sum(len(rows) for rows in sets.values()) >= 150
    assert all(sets[name] for name in EVAL_SETS)
    assert sha256_rows(sets["golden"]) == task.golden_sha256
    # Every label is represented in the seeds and the test set.
    assert {r["target"] for r in seeds} == set(contract.labels) == {r["target"] for r in sets["test"]}


def test_no_text_is_shared_between_seeds_and_eval_sets():
    task = load_task(SHIPPED)
    contract = task.build_contract()
    texts = [r["text"].strip().lower() for name in ("seeds", *EVAL_SETS) for r in load_examples(task.path(name), contract, name)]
    assert len(texts) == len(set(texts))


def test_load_task_names_the_field_that_is_wrong(tiny_task):
    raw = yaml.safe_load((tiny_task / "task.yaml").read_text())
    del raw["contract"]["labels"]
    (tiny_task / "task.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(DataError) as err:
        load_task(tiny_task)
    assert "task.yaml" in str(err.value) and err.value.field == "contract"


def test_load_task_reports_a_missing_task_file(tmp_path):
    with pytest.raises(DataError, match="task.yaml not found"):
        load_task(tmp_path)


def test_messages_cut_long_inputs_the_same_way_everywhere(tiny_task):
    task = load_task(tiny_task)
    messages = task.messages("x" * 1000)
    assert messages[0] == {"role": "system", "content": task.system_prompt}
    assert messages[1]["content"] == "x" * 400


@pytest.mark.parametrize("settings, message", [
    ({"fallback_label": "refunds"}, "fallback_label 'refunds' is not one of the contract's labels"),
    ({"abstain_below": 0.5}, "abstain_below needs a fallback_label to answer with"),
    ({"abstain_below": 1.5, "fallback_label": "billing"}, "less than or equal to 1"),
])
def test_abstention_settings_are_checked_when_the_task_loads(tiny_task, settings, message):
    spec_path = tiny_task / "task.yaml"
    spec_path.write_text(yaml.safe_dump({**yaml.safe_load(spec_path.read_text()), **settings}))
    with pytest.raises(DataError, match=message):
        load_task(tiny_task)
    spec_path.write_text(yaml.safe_dump({**yaml.safe_load(spec_path.read_text()), "fallback_label": "billing",
                                         "abstain_below": 0.5}))
    assert load_task(tiny_task).fallback_label == "billing"


@pytest.mark.parametrize("difficulty, message", [
    ({"easy": 0.5, "extreme": 0.5}, r"unknown difficulties \['extreme'\] in generation.difficulty"),
    ({"easy": 0.0, "hard": 0.0}, "shares must be >= 0 and at least one above 0"),
    ({"easy": -1.0, "hard": 2.0}, "shares must be >= 0"),
])
def test_the_teachers_difficulty_shares_are_checked_when_the_task_loads(tiny_task, difficulty, message):
    spec_path = tiny_task / "task.yaml"
    raw = yaml.safe_load(spec_path.read_text())
    spec_path.write_text(yaml.safe_dump({**raw, "generation": {"difficulty": difficulty}}))
    with pytest.raises(DataError, match=message):
        load_task(tiny_task)
    spec_path.write_text(yaml.safe_dump({**raw, "generation": {"difficulty": {"hard": 1.0}}}))
    assert load_task(tiny_task).generation.difficulty == {"hard": 1.0}
