import json
from collections import Counter

import dagster as dg
from pydantic import Field
from tqdm import tqdm

from factory.defs.automation import AFTER_UPSTREAM
from factory.defs.metadata import table_metadata
from factory.defs.partitions import dataset_versions
from factory.integrations.resources import Embedder
from factory.integrations.storage import FactoryStorage
from factory.integrations.teacher import Sampling, Teacher
from factory.lib.augment import augment
from factory.lib.examples import load_texts
from factory.lib.files import atomic_dir, read_jsonl, write_json, write_jsonl
from factory.lib.gates import text_problem
from factory.lib.pseudo_labels import pseudo_labelled_rows
from factory.lib.schemas import ExampleSchema
from factory.lib.teacher import (
    build_plan,
    generated_rows,
    nearest_labels,
    parse_generated,
    plan_summary,
    previous_artifact,
    render_requests,
    rows_schema,
)
from factory.lib.versions import parse_version_key, version_key


class GenerationConfig(dg.Config):
    # Off by default: no task measured better with it (support_email's best run in the demo's budget trains without it).
    variants_per_seed: int = Field(default=0, description="augmenter variants made from each seed, with operations that "
                                                          "fit the task's input_style")
    use_teacher: bool = Field(default=True, description="ask the teacher for the task's `generation` plan when one is "
                                                        "configured (FACTORY_TEACHER_BACKEND)")
    rows_per_label: int = Field(default=-1, description="teacher rows per label; -1: the task's generation.rows_per_label")
    from_previous_version: bool = Field(default=True, description="also ask for the rows the previous version's gates "
                                                                  "left short and its failure clusters' near misses")
    max_failed_share: float = Field(default=0.5, description="fail the run when more of the teacher's requests than "
                                                             "this fail for good (finished ones stay cached)")
    pseudo_labels_per_label: int = Field(default=0, description="self-training: up to this many texts a label from the task's "
                                                                "unlabeled.jsonl and its logged requests, labelled by MiniLM + "
                                                                "LR fit on the seeds")
    pseudo_label_min_confidence: float = Field(default=0.5, description="texts the classifier is less sure of stay out")
    seed: int = Field(default=0, description="same seed, same rows (and the same teacher prompts)")


@dg.asset(partitions_def=dataset_versions, automation_condition=AFTER_UPSTREAM, deps=["seed_examples"], kinds={"jsonl"})
def generated_examples(context: dg.AssetExecutionContext, config: GenerationConfig, storage: FactoryStorage,
                       teacher: Teacher, embedder: Embedder) -> dg.MaterializeResult:
    """Synthetic rows made from the seeds: the augmenter's variants and the teacher's rows, each with its provenance
    (generator, parents, teacher, template and hash, sampling, raw output id)."""
    key = context.partition_key
    task = storage.task_for(key)
    seeds = read_jsonl(storage.asset_dir(key, "seed_examples") / "seeds.jsonl")
    rows = augment(seeds, config.variants_per_seed, config.seed, style=task.input_style)
    if config.pseudo_labels_per_label > 0:
        rows += _pseudo_labelled(config, storage, task, seeds, embedder)
    folder = storage.asset_dir(key, "generated_examples")
    teacher_metadata, plan, raw = {}, [], []
    if config.use_teacher and teacher.configured:
        plan, taught, raw, teacher_metadata = _teach(context, config, storage, teacher, embedder, task, seeds)
        rows += taught
    with atomic_dir(folder) as scratch:
        write_json(scratch / "plan.json", {"items": plan_summary(plan)})
        write_jsonl(scratch / "raw_outputs.jsonl", raw)
        write_jsonl(scratch / "generated.jsonl", rows)
    return dg.MaterializeResult(metadata={**table_metadata(rows, ExampleSchema, folder / "generated.jsonl"),
                                          "rows_by_generator": dg.MetadataValue.json(dict(Counter(r["generator"] for r in rows))),
                                          **teacher_metadata})


def _pseudo_labelled(config: GenerationConfig, storage: FactoryStorage, task, seeds: list[dict], embedder: Embedder) -> list[dict]:
    """Rows for the texts of the task's unlabeled.jsonl and of its served requests (production_logs), labelled."""
    path, table = task.path("unlabeled"), storage.traffic_dir(task.name) / "production_logs.jsonl"
    if not path.exists() and not table.exists():
        raise dg.Failure(f"pseudo_labels_per_label is {config.pseudo_labels_per_label} but there is nothing to label: "
                         f"{path} does not exist ({{\"text\": ...}} lines) and no request was logged ({table}); "
                         "add texts or set it to 0")
    pool = load_texts(path) if path.exists() else []
    # Requests a person reviews go to the production eval set, where the leakage gate keeps their copies out.
    pool += [{"id": f"request-{row['id']}", "text": row["input"]} for row in (read_jsonl(table) if table.exists() else [])
             if row.get("type") == "request" and isinstance(row.get("input"), str) and row["input"].strip()]
    embeddings = embedder.encode([row["text"] for row in seeds] + [row["text"] for row in pool])
    return pseudo_labelled_rows(seeds, embeddings[: len(seeds)], pool, embeddings[len(seeds):],
                                config.pseudo_labels_per_label, config.pseudo_label_min_confidence, config.seed)


def _teach(context, config: GenerationConfig, storage: FactoryStorage, teacher: Teacher, embedder: Embedder, task, seeds):
    """The plan (quota + last version's shortfalls + its repair targets), asked of the teacher with a progress bar."""
    name, number = parse_version_key(context.partition_key)

    def previous(asset: str, file: str):
        if not config.from_previous_version:
            return None
        return previous_artifact(lambda n: storage.asset_dir(version_key(name, n), asset), number, file)

    shortfalls_path = previous("accepted_examples", "summary.json")
    repairs_path = previous("eval_report", "repair_targets.json")
    spec = task.generation
    rows_per_label = spec.rows_per_label if config.rows_per_label < 0 else config.rows_per_label
    targets = [s["target"] for s in seeds]
    plan = build_plan(sorted(task.contract.labels or {}), rows_per_label, spec.mix,
                      nearest_labels(targets, embedder.encode([s["text"] for s in seeds])) if seeds else {},
                      json.loads(shortfalls_path.read_text())["label_shortfalls"] if shortfalls_path else None,
                      json.loads(repairs_path.read_text()) if repairs_path else None, task.fallback_label)
    max_chars = min(spec.max_chars, task.max_input_chars)
    requests = render_requests(plan, task, seeds, spec.rows_per_request, spec.few_shot, config.seed, max_chars,
                               difficulty=spec.difficulty)
    sampling = Sampling(temperature=spec.temperature, max_tokens=spec.max_tokens, seed=config.seed, json_schema=rows_schema(spec.rows_per_request, max_chars))
    provenance = {**teacher.describe(), "sampling": {"temperature": spec.temperature, "max_tokens": spec.max_tokens,
                                                     "seed": config.seed}}
    rows_by_request: dict[int, list[dict]] = {}
    bar = tqdm(total=len(requests), desc="teacher", unit="request")
    # accepted so far: rows the schema gate will take (readable text); the later gates and the judge decide the rest
    progress = {"rows": 0, "accepted": 0, "tokens": 0}

    def on_done(i, completion):
        parsed = parse_generated(completion.text) if completion.error is None else None
        if parsed is not None:
            batch = generated_rows(requests[i], parsed, completion.key, {**provenance, "generated_at": completion.created_at})
            rows_by_request[i] = batch
            progress["rows"] += len(batch)
            progress["accepted"] += sum(text_problem(r) is None for r in batch)
        progress["tokens"] += completion.prompt_tokens + completion.completion_tokens
        bar.update(1)
        bar.set_postfix(progress)

    completions = teacher.complete([r.messages for r in requests], sampling, on_done)
    bar.close()
    failed = [c for c in completions if c.error]
    raw = [{"raw_output_id": c.key, "text": c.text, "error": c.error, "attempts": c.attempts, "cached": c.cached,
            "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens} for c in completions]
    if requests and len(failed) / len(requests) > config.max_failed_share:
        raise dg.Failure(f"{len(failed)} of {len(requests)} teacher requests failed (first: {failed[0].error}); the "
                         f"{len(requests) - len(failed)} finished replies are cached and will not be asked again")
    rows = [row for i in sorted(rows_by_request) for row in rows_by_request[i]]
    unparsed = sum(1 for r in rows if r.get("parse_error"))
    context.log.info(f"teacher: {len(requests)} requests, {len(failed)} failed, {len(rows) - unparsed} rows, "
                     f"{unparsed} unparseable replies, {progress['tokens']} tokens")
    return plan, rows, raw, {
        "teacher": dg.MetadataValue.json(teacher.describe()),
        "teacher_requests": len(requests), "teacher_failed_requests": len(failed),
        "teacher_cached_replies": sum(c.cached for c in completions), "teacher_unparseable_replies": unparsed,
        "teacher_tokens": progress["tokens"], "teacher_cost": round(teacher.cost(completions), 6),
        "plan_rows_by_reason": dg.MetadataValue.json(dict(Counter(i.reason for i in plan for _ in range(i.rows)))),
    }
