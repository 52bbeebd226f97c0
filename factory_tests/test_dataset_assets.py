"""Tiers 2-3: dataset assets called directly and materialised as a chain on a temporary instance."""
import json

import dagster as dg
import pytest

from factory.defs.dataset.accepted_examples import accepted_examples, accepted_examples_hold
from factory.defs.dataset.dataset_splits import dataset_splits
from factory.defs.dataset.eval_sets import eval_sets
from factory.defs.dataset.generated_examples import generated_examples
from factory.defs.dataset.judged_examples import judged_examples
from factory.defs.dataset.seed_examples import seed_examples
from factory.lib.files import read_jsonl

CHAIN = [eval_sets, seed_examples, generated_examples, judged_examples, accepted_examples, accepted_examples_hold, dataset_splits]


def test_seed_examples_called_directly_writes_the_version_snapshot(resources, data_root):
    context = dg.build_asset_context(partition_key="tiny.v1")
    result = seed_examples(context, storage=resources["storage"])
    assert result.metadata["dagster/row_count"] == 18
    rows = read_jsonl(data_root / "versions" / "tiny.v1" / "seed_examples" / "seeds.jsonl")
    assert {r["target"] for r in rows} == {"billing", "shipping", "login"}


def test_dataset_chain_materialises_one_partition(resources, data_root, instance):
    one_variant = {"ops": {"generated_examples": {"config": {"variants_per_seed": 1}}}}
    result = dg.materialize(CHAIN, partition_key="tiny.v1", resources=resources, instance=instance, run_config=one_variant)
    assert result.success
    version = data_root / "versions" / "tiny.v1"
    accepted = read_jsonl(version / "accepted_examples" / "accepted.jsonl")
    rejected = read_jsonl(version / "accepted_examples" / "rejected.jsonl")
    assert len(accepted) + len(rejected) == 18 * 2  # seeds + one variant each
    splits = read_jsonl(version / "dataset_splits" / "train.jsonl") + read_jsonl(version / "dataset_splits" / "validation.jsonl")
    assert sorted(r["id"] for r in splits) == sorted(r["id"] for r in accepted)
    checks = result.get_asset_check_evaluations()
    assert [(c.check_name, c.passed) for c in checks] == [("accepted_examples_hold", True)]
    from datasets import load_from_disk

    hf = load_from_disk(str(version / "dataset_splits" / "hf"))
    assert {name: hf[name].num_rows for name in hf} == {name: len(read_jsonl(version / "dataset_splits" / f"{name}.jsonl"))
                                                          for name in ("train", "validation")}
    assert set(hf["train"]["id"]) == {r["id"] for r in read_jsonl(version / "dataset_splits" / "train.jsonl")}
    card = (version / "dataset_splits" / "README.md").read_text()
    assert "# tiny.v1" in card and "| billing |" in card and f"{len(accepted) + len(rejected)} candidate rows" in card


def test_failed_blocking_check_stops_the_splits(resources, data_root, tiny_task, instance):
    # Every 'login' seed is also an eval row: the leakage gate rejects them all and the label vanishes.
    seeds = [json.loads(line) for line in (tiny_task / "seeds.jsonl").read_text().splitlines()]
    leaked = [{"id": f"dev-{i}", "text": s["text"], "label": "login"} for i, s in enumerate(seeds) if s["label"] == "login"]
    (tiny_task / "eval" / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in leaked))
    result = dg.materialize(CHAIN, partition_key="tiny.v1", resources=resources, instance=instance, raise_on_error=False)
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks["accepted_examples_hold"].passed is False
    assert "login" in json.dumps(checks["accepted_examples_hold"].metadata["problems"].value)
    assert not (data_root / "versions" / "tiny.v1" / "dataset_splits").exists()


def test_bad_seed_file_fails_with_file_line_field_and_writes_nothing(resources, data_root, tiny_task, instance):
    with (tiny_task / "seeds.jsonl").open("a") as handle:
        handle.write(json.dumps({"id": "new", "text": "hello", "label": "refunds"}) + "\n")
    result = dg.materialize(CHAIN, partition_key="tiny.v1", resources=resources, instance=instance, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure and e.step_key == "seed_examples")
    message = failure.step_failure_data.error.cause.message if failure.step_failure_data.error.cause else failure.step_failure_data.error.message
    assert "seeds.jsonl, line 19, field 'label': unknown label 'refunds'" in message
    version = data_root / "versions" / "tiny.v1"
    assert not (version / "seed_examples").exists() and not (version / "accepted_examples").exists()


def test_golden_set_is_locked(resources, tiny_task, instance):
    golden = tiny_task / "eval" / "golden.jsonl"
    golden.write_text(golden.read_text().replace("Double charge", "Triple charge"))
    with pytest.raises(dg.Failure, match="golden set is locked"):
        eval_sets(dg.build_asset_context(partition_key="tiny.v1"), storage=resources["storage"])


@pytest.mark.parametrize("missing", ["dev", "test"])
def test_a_task_without_dev_or_test_rows_is_refused_at_eval_sets_naming_the_file(resources, tiny_task, missing):
    (tiny_task / "eval" / f"{missing}.jsonl").unlink()
    with pytest.raises(dg.Failure, match=rf"eval/{missing}.jsonl: the {missing} set is missing"):
        eval_sets(dg.build_asset_context(partition_key="tiny.v1"), storage=resources["storage"])
    (tiny_task / "eval" / f"{missing}.jsonl").write_text("")
    with pytest.raises(dg.Failure, match=rf"eval/{missing}.jsonl: the {missing} set has no rows"):
        eval_sets(dg.build_asset_context(partition_key="tiny.v1"), storage=resources["storage"])


ROWS = [{"id": "a", "text": "hello there", "target": "billing", "source": "seed"},
        {"id": "b", "text": "where is it", "target": "shipping", "source": "seed"}]


@pytest.mark.parametrize("accepted, rejected, expected, problem", [
    ([ROWS[0], {**ROWS[1], "id": "c"}], [], 3, "accepted 2 + rejected 0 != input 3"),  # a row lost between the stages
    (ROWS, [{"id": "c", "gate": "length", "reason": "too short"}], 2, "accepted 2 + rejected 1 != input 2"),
    ([{**ROWS[0], "text": ""}, ROWS[1]], [], 2, "schema: "),
    ([ROWS[0], {**ROWS[1], "id": "a"}], [], 2, "schema: "),  # ids must stay unique
    (ROWS, [{"id": "c", "gate": "length", "reason": ""}], 3, "schema: "),  # a rejection needs its reason
    (ROWS[:1], [{"id": "b", "gate": "length", "reason": "too short"}], 2, "labels with no accepted row: ['shipping']"),
])
def test_the_dataset_check_names_each_kind_of_problem(accepted, rejected, expected, problem):
    from factory.lib.schemas import accepted_table_problems

    problems = accepted_table_problems(accepted, rejected, expected, {"billing": "", "shipping": ""})
    assert len(problems) == 1 and problems[0].startswith(problem)
    assert accepted_table_problems(ROWS, [], 2, {"billing": "", "shipping": ""}) == []


def test_same_rows_and_seed_give_byte_identical_splits(resources, data_root, instance, tmp_path, model_cache):
    import shutil

    from factory.defs.resources import factory_resources

    other = tmp_path / "other" / "data"
    shutil.copytree(data_root / "tasks", other / "tasks")
    assert dg.materialize(CHAIN, partition_key="tiny.v1", resources=resources, instance=instance).success
    with dg.instance_for_test() as second:
        second.add_dynamic_partitions("dataset_version", ["tiny.v1"])
        assert dg.materialize(CHAIN, partition_key="tiny.v1", instance=second,
                              resources=factory_resources(str(other), str(model_cache))).success
    for name in ("train.jsonl", "validation.jsonl"):
        first = (data_root / "versions" / "tiny.v1" / "dataset_splits" / name).read_bytes()
        assert first and first == (other / "versions" / "tiny.v1" / "dataset_splits" / name).read_bytes()


@pytest.mark.parametrize("scrub", [True, False])
def test_pii_in_seeds_is_scrubbed_before_training_unless_turned_off(resources, data_root, tiny_task, instance, scrub):
    seeds = [json.loads(line) for line in (tiny_task / "seeds.jsonl").read_text().splitlines()]
    seeds[0]["text"] = "I was charged twice, card 4111 1111 1111 1111, mail me at ann@example.org"
    (tiny_task / "seeds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in seeds))
    config = {"ops": {"accepted_examples": {"config": {"scrub_pii": scrub, "use_embeddings": False}}}}
    result = dg.materialize(CHAIN[:5], partition_key="tiny.v1", resources=resources, instance=instance, run_config=config)
    rows = {r["id"]: r for r in read_jsonl(data_root / "versions" / "tiny.v1" / "accepted_examples" / "accepted.jsonl")}
    metadata = result.asset_materializations_for_node("accepted_examples")[0].metadata
    if scrub:
        assert rows[seeds[0]["id"]]["text"] == "I was charged twice, card <CREDIT_CARD>, mail me at <EMAIL_ADDRESS>"
        assert rows[seeds[0]["id"]]["pii"] == ["CREDIT_CARD", "EMAIL_ADDRESS"]
        assert metadata["pii_scrubbed_rows"].value >= 1 and rows[seeds[1]["id"]]["pii"] == []
    else:
        assert rows[seeds[0]["id"]]["text"] == seeds[0]["text"] and "pii" not in rows[seeds[0]["id"]]
        assert metadata["pii_scrubbed_rows"].value == 0


UNLABELED = [
    ("I see two identical charges from you on my card.", "billing"),
    ("An unknown fee of 12 euros appeared on my statement.", "billing"),
    ("My parcel still has not arrived after ten days.", "shipping"),
    ("The courier says the package was lost in transit.", "shipping"),
    ("I cannot sign in: the password reset link is broken.", "login"),
    ("My account is locked after too many login attempts.", "login"),
]


def test_unlabeled_texts_and_logged_requests_become_confident_pseudo_labelled_rows_that_the_gates_take(
        resources, data_root, tiny_task, instance):
    (tiny_task / "unlabeled.jsonl").write_text("".join(json.dumps({"id": f"u{i}", "text": text}) + "\n"
                                                       for i, (text, _) in enumerate(UNLABELED[::2])))
    logs = data_root / "traffic" / "tiny" / "production_logs.jsonl"
    logs.parent.mkdir(parents=True)
    logs.write_text("".join(json.dumps({"type": "request", "id": f"r{i}", "input": text}) + "\n"
                            for i, (text, _) in enumerate(UNLABELED[1::2])) + json.dumps({"type": "feedback", "id": "f1"}) + "\n")
    config = {"ops": {"generated_examples": {"config": {"pseudo_labels_per_label": 2, "pseudo_label_min_confidence": 0.3}}}}
    result = dg.materialize(CHAIN, partition_key="tiny.v1", resources=resources, instance=instance, run_config=config)
    assert result.success
    version = data_root / "versions" / "tiny.v1"
    generated = read_jsonl(version / "generated_examples" / "generated.jsonl")
    truth = {**{f"u{i}": label for i, (_, label) in enumerate(UNLABELED[::2])},
             **{f"request-r{i}": label for i, (_, label) in enumerate(UNLABELED[1::2])}}
    # Two rows a label, one from each source, each labelled as a person would have.
    assert sorted(r["parent_id"] for r in generated) == sorted(truth)
    assert all(r["target"] == truth[r["parent_id"]] and r["source"] == "pseudo_label" and r["label_confidence"] >= 0.3
               for r in generated)
    accepted = {r["id"] for r in read_jsonl(version / "accepted_examples" / "accepted.jsonl")}
    assert {r["id"] for r in generated} <= accepted


def test_pseudo_labels_asked_with_nothing_to_label_fail_naming_the_files(resources, data_root, tiny_task, instance):
    config = {"ops": {"generated_examples": {"config": {"pseudo_labels_per_label": 5}}}}
    result = dg.materialize(CHAIN, partition_key="tiny.v1", resources=resources, instance=instance, run_config=config,
                            raise_on_error=False)
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert failure.step_key == "generated_examples"
    message = failure.step_failure_data.error.message
    assert f"{tiny_task / 'unlabeled.jsonl'} does not exist" in message
    assert f"no request was logged ({data_root.resolve() / 'traffic' / 'tiny' / 'production_logs.jsonl'})" in message
    assert not (data_root / "versions" / "tiny.v1" / "generated_examples").exists()
