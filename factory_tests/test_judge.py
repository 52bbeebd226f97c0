"""The judge's rubric (pure), and the data factory's assets with a real llama.cpp-server teacher."""
import dagster as dg
import pytest
import yaml

from factory.lib.judge import DIMENSIONS, JudgeRule, agreement, flipped_label, parse_verdict, rule_on

GOOD = {"realism": 4, "correctness": 5, "format": 5, "difficulty": 3, "diversity": 3, "learnability": 4, "safety": 5}


def test_a_verdict_parses_from_json_with_prose_and_string_digits():
    verdict = parse_verdict('Here: {"realism": "4", "correctness": 5, "format": 5, "difficulty": 3, "diversity": 3, '
                            '"learnability": 4, "safety": 5, "reason": "fine"} done')
    assert [verdict[d] for d in DIMENSIONS] == [4, 5, 5, 3, 3, 4, 5] and verdict["reason"] == "fine"


@pytest.mark.parametrize("raw, problem", [
    ("no json here", "not a JSON object"),
    ('{"realism": 4}', "correctness must be an integer 1-5, got None"),
    ('{"realism": 6, "correctness": 5, "format": 5, "difficulty": 3, "diversity": 3, "learnability": 4, "safety": 5}',
     "realism must be an integer 1-5, got 6"),
    ('{"realism": true, "correctness": 5}', "realism must be an integer 1-5, got True"),
])
def test_unreadable_verdicts_say_what_is_wrong(raw, problem):
    with pytest.raises(ValueError, match=problem.replace("(", r"\(")):
        parse_verdict(raw)


def test_the_rule_accepts_at_26_and_names_every_threshold_missed():
    assert rule_on(GOOD) == (True, "total 29/35")
    passed, why = rule_on({**GOOD, "correctness": 3, "format": 4, "realism": 1})
    assert not passed and why == "total 23 < 26; correctness 3 < 4; format 4 < 5"
    assert rule_on({**GOOD, "realism": 1}) == (True, "total 26/35")
    assert rule_on({**GOOD, "safety": 3}) == (False, "safety 3 < 4")
    assert rule_on({**GOOD, "realism": 1}, JudgeRule(min_total=27)) == (False, "total 26 < 27")


def test_agreement_needs_the_judge_to_accept_true_labels_and_refuse_wrong_ones():
    true = [GOOD, {**GOOD, "correctness": 2}, None, GOOD]
    flipped = [{**GOOD, "correctness": 1}, GOOD, {**GOOD, "correctness": 3}, None]
    assert agreement(true, flipped) == {"seeds_judged": 4, "verdicts_parsed": 6, "accepts_true_labels": 0.6667,
                                        "refuses_flipped_labels": 0.6667, "balanced_agreement": 0.6667}
    # A judge that says yes to everything agrees with every true label and is worth nothing: 0.5.
    assert agreement([GOOD] * 3, [GOOD] * 3)["balanced_agreement"] == 0.5
    assert agreement([None], [None])["balanced_agreement"] is None


def test_a_flipped_label_is_always_another_label_and_seeded():
    labels = ["a", "b", "c"]
    assert all(flipped_label(label, labels, seed) != label for label in labels for seed in range(20))
    assert flipped_label("a", labels, 0) == flipped_label("a", labels, 0)


def _factory_run(resources, instance, run_config):
    from factory.defs.dataset.accepted_examples import accepted_examples, accepted_examples_hold
    from factory.defs.dataset.eval_sets import eval_sets
    from factory.defs.dataset.generated_examples import generated_examples
    from factory.defs.dataset.judged_examples import judged_examples
    from factory.defs.dataset.seed_examples import seed_examples

    return dg.materialize([eval_sets, seed_examples, generated_examples, judged_examples, accepted_examples,
                           accepted_examples_hold], partition_key="tiny.v1", resources=resources, instance=instance,
                          run_config=run_config, raise_on_error=False)


def test_a_version_with_a_llama_cpp_server_teacher_has_provenance_verdicts_and_gates(resources, data_root, instance,
                                                                                       llama_server):
    import json

    from factory.integrations.teacher import Teacher
    from factory.lib.files import read_jsonl

    task_yaml = data_root / "tasks" / "tiny" / "task.yaml"
    spec = yaml.safe_load(task_yaml.read_text())
    # Short requests keep a 135M teacher on 2 cores to seconds; the schema still holds each reply to its rows.
    spec["generation"] = {"rows_per_request": 1, "max_chars": 120, "max_tokens": 100}
    task_yaml.write_text(yaml.safe_dump(spec))
    resources["teacher"] = Teacher(storage=resources["storage"], backend="http", base_url=llama_server["base_url"],
                                   model=llama_server["model"])
    config = {"ops": {"generated_examples": {"config": {"rows_per_label": 2}},
                      "judged_examples": {"config": {"agreement_seeds": 2}}}}
    result = _factory_run(resources, instance, config)
    assert result.success
    version = data_root / "versions" / "tiny.v1"
    generated = read_jsonl(version / "generated_examples" / "generated.jsonl")
    raw = {r["raw_output_id"]: r for r in read_jsonl(version / "generated_examples" / "raw_outputs.jsonl")}
    assert len(generated) == 6 and all(r["source"] == "teacher" for r in generated)  # 2 a label, as the schema holds it
    for row in generated:  # full provenance on every row
        assert row["teacher_backend"] == "http" and row["teacher_model"] == "smollm2"
        assert row["template"] == "classification" and len(row["template_sha256"]) == 64
        assert row["sampling"] == {"temperature": 0.9, "max_tokens": 100, "seed": 0}
        assert row["raw_output_id"] in raw and row["generated_at"] and row["kind"] in {"canonical", "boundary",
                                                                                      "near_miss", "production_like"}
        assert row["parent_ids"] and row["plan_reason"] == "quota" and row["difficulty"] in {"easy", "medium", "hard"}
    judged = read_jsonl(version / "judged_examples" / "judged.jsonl")
    assert [r["id"] for r in judged] == [r["id"] for r in generated]
    verdicts = [r["judge"] for r in judged if r.get("text")]
    assert verdicts and all(v["verdict"] in {"passed", "failed", "unreadable"} and v["reason"] for v in verdicts)
    summary = json.loads((version / "judged_examples" / "summary.json").read_text())
    assert summary["seed_agreement"]["seeds_judged"] == 2 and summary["seed_agreement"]["balanced_agreement"] is not None
    # Every row is accepted or rejected; a failed verdict is the `judge` gate's rejection.
    accepted = read_jsonl(version / "accepted_examples" / "accepted.jsonl")
    rejected = read_jsonl(version / "accepted_examples" / "rejected.jsonl")
    seeds = read_jsonl(version / "seed_examples" / "seeds.jsonl")
    assert len(accepted) + len(rejected) == len(seeds) + len(generated)
    failed_by_judge = {r["id"] for r in judged if r.get("judge", {}).get("passed") is False}
    assert failed_by_judge == {r["id"] for r in rejected if r["gate"] == "judge"}
    assert all(r["judge"]["passed"] for r in accepted if r["source"] == "teacher")

    # Materialised again, every reply comes from the cache: same rows, no request to the teacher.
    resources["teacher"] = Teacher(storage=resources["storage"], backend="http", base_url="http://127.0.0.1:9/v1", retries=1,
                                   model=llama_server["model"])
    again = _factory_run(resources, instance, config)
    assert again.success
    def without_url(rows):
        return [{k: v for k, v in r.items() if k != "teacher_url"} for r in rows]

    assert without_url(read_jsonl(version / "generated_examples" / "generated.jsonl")) == without_url(generated)
    metadata = again.asset_materializations_for_node("generated_examples")[0].metadata
    assert metadata["teacher_cached_replies"].value == metadata["teacher_requests"].value


def test_an_unreachable_teacher_fails_the_asset_and_leaves_the_last_rows_in_place(resources, data_root, instance):
    from factory.integrations.teacher import Teacher

    first = _factory_run(resources, instance, {})
    assert first.success
    before = (data_root / "versions" / "tiny.v1" / "generated_examples" / "generated.jsonl").read_bytes()
    resources["teacher"] = Teacher(storage=resources["storage"], backend="http", base_url="http://127.0.0.1:9/v1",
                                   retries=2, backoff_s=0.001, timeout_s=1)
    result = _factory_run(resources, instance, {"ops": {"generated_examples": {"config": {"rows_per_label": 2}}}})
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "teacher requests failed" in str(failure.event_specific_data.error) and "cannot connect" in str(
        failure.event_specific_data.error)
    assert (data_root / "versions" / "tiny.v1" / "generated_examples" / "generated.jsonl").read_bytes() == before


def test_every_verdict_request_shares_the_task_labels_and_rubric_as_one_prefix(tmp_path):
    """llama.cpp reuses the longest prefix it already processed, so only the row may come after the rubric: with it
    after the row, every verdict re-read ~250 tokens (a third of a 1.5B judge's time a row on two cores)."""
    import os

    from factory.lib.judge import judge_messages, judge_template
    from factory.lib.task import load_task
    from factory_tests.conftest import make_tiny_task

    task = load_task(make_tiny_task(tmp_path))
    template, _ = judge_template()
    contents = [judge_messages(template, task, text, label)[0]["content"]
                for text, label in [("I was charged twice.", "billing"), ("Where is my parcel?", "shipping")]]
    shared = os.path.commonprefix(contents)
    assert all(f"- {label}:" in shared for label in ("billing", "shipping", "login"))
    assert all(f"- {dimension}:" in shared for dimension in DIMENSIONS) and '"reason": "..."}' in shared



def test_the_verdict_grammar_llama_cpp_builds_bounds_the_reason():
    """A 1.5B judge asked for "a few words" still ran past its 200 tokens on 7 of 154 Banking77 verdicts, which then
    did not parse: the schema caps the reason, and llama.cpp's grammar (what the local and llama.cpp-server backends
    decode under) must bound it, not loop on `char*`."""
    import json
    import re

    from llama_cpp.llama_grammar import json_schema_to_gbnf

    from factory.lib.judge import REASON_MAX_CHARS, VERDICT_SCHEMA

    grammar = json_schema_to_gbnf(json.dumps(VERDICT_SCHEMA))
    reason = next(line for line in grammar.splitlines() if line.startswith("reason ::="))
    assert "char*" not in reason and "char+" not in reason
    assert len(re.findall(r"\bchar\b", reason)) == REASON_MAX_CHARS
