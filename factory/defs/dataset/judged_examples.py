from collections import Counter

import dagster as dg
from pydantic import Field

from factory.defs.automation import AFTER_UPSTREAM
from factory.defs.metadata import table_metadata
from factory.defs.partitions import dataset_versions
from factory.integrations.storage import FactoryStorage
from factory.integrations.teacher import Sampling, Teacher
from factory.lib.files import atomic_dir, read_jsonl, sample_rows, write_json, write_jsonl
from factory.lib.judge import (
    VERDICT_SCHEMA,
    JudgeRule,
    agreement,
    flipped_label,
    judge_messages,
    judge_template,
    parse_verdict,
    row_hash,
    rule_on,
)
from factory.lib.schemas import ExampleSchema

RULE = JudgeRule()


class JudgeConfig(dg.Config):
    use_judge: bool = Field(default=True, description="judge the teacher's rows when a teacher is configured")
    sources: list[str] = Field(default=["teacher"], description="row sources the judge reads")
    min_total: int = Field(default=RULE.min_total, description="of 35 (seven dimensions, 1-5 each)")
    min_correctness: int = Field(default=RULE.min_correctness)
    min_format: int = Field(default=RULE.min_format)
    min_safety: int = Field(default=RULE.min_safety)
    agreement_seeds: int = Field(default=50, description="seeds judged twice, with their label and a wrong one, to "
                                                         "measure how far the judge follows people's labels")
    seed: int = Field(default=0)


@dg.asset(partitions_def=dataset_versions, automation_condition=AFTER_UPSTREAM, deps=["generated_examples", "seed_examples"],
          kinds={"jsonl"})
def judged_examples(context: dg.AssetExecutionContext, config: JudgeConfig, storage: FactoryStorage,
                    teacher: Teacher) -> dg.MaterializeResult:
    """The generated rows, each teacher row with the judge's seven scores, verdict and reason (cached by the row's
    text and label); the judge's agreement with the seeds' labels says how far to trust it."""
    key = context.partition_key
    task = storage.task_for(key)
    rows = read_jsonl(storage.asset_dir(key, "generated_examples") / "generated.jsonl")
    rule = JudgeRule(config.min_total, config.min_correctness, config.min_format, config.min_safety)
    judged = [i for i, row in enumerate(rows) if row.get("source") in config.sources and row.get("text")]
    summary = {"judge": "off" if not (config.use_judge and teacher.configured) else teacher.describe(), "judged": 0}
    if config.use_judge and teacher.configured and (judged or config.agreement_seeds):
        seeds = sample_rows(read_jsonl(storage.asset_dir(key, "seed_examples") / "seeds.jsonl"), config.agreement_seeds,
                            config.seed)
        template, digest = judge_template()
        labels = sorted(task.contract.labels or {})
        texts = [(rows[i]["text"], rows[i]["target"]) for i in judged] + [(s["text"], s["target"]) for s in seeds]
        texts += [(s["text"], flipped_label(s["target"], labels, config.seed)) for s in seeds]
        completions = teacher.complete([judge_messages(template, task, t, label) for t, label in texts],
                                       Sampling(temperature=0.0, max_tokens=200, seed=config.seed, json_schema=VERDICT_SCHEMA))
        verdicts = [_verdict(c, rule, digest, row_hash(*pair)) for c, pair in zip(completions, texts)]
        for i, verdict in zip(judged, verdicts):
            rows[i] = {**rows[i], "judge": verdict}
        seed_verdicts = [v.get("scores") for v in verdicts[len(judged):]]
        summary = {"judge": teacher.describe(), "judged": len(judged),
                   "verdicts": dict(Counter(v["verdict"] for v in verdicts[: len(judged)])),
                   "seed_agreement": agreement(seed_verdicts[: len(seeds)], seed_verdicts[len(seeds):], rule), "rule": rule.__dict__}
    folder = storage.asset_dir(key, "judged_examples")
    with atomic_dir(folder) as scratch:
        write_json(scratch / "summary.json", summary)
        write_jsonl(scratch / "judged.jsonl", rows)
    return dg.MaterializeResult(metadata={**table_metadata(rows, ExampleSchema, folder / "judged.jsonl"),
                                          "judge_summary": dg.MetadataValue.json(summary)})


def _verdict(completion, rule: JudgeRule, template_sha256: str, hash_: str) -> dict:
    """passed / failed / unreadable, with the scores and the reason; what the `judge` gate acts on."""
    base = {"row_hash": hash_, "judge_template_sha256": template_sha256, "raw_output_id": completion.key}
    if completion.error:
        return {**base, "verdict": "unreadable", "passed": False, "reason": f"the judge failed: {completion.error}"}
    try:
        scores = parse_verdict(completion.text)
    except ValueError as exc:
        return {**base, "verdict": "unreadable", "passed": False, "reason": f"unreadable verdict: {exc}"}
    passed, why = rule_on(scores, rule)
    return {**base, "verdict": "passed" if passed else "failed", "passed": passed, "reason": why, "scores": scores}
