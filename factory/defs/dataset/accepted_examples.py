from collections import Counter

import dagster as dg
from pydantic import Field

from factory.defs.automation import AFTER_UPSTREAM
from factory.defs.metadata import table_metadata
from factory.defs.partitions import dataset_versions
from factory.integrations.resources import BaseModel, Embedder
from factory.integrations.storage import FactoryStorage
from factory.lib.files import atomic_dir, read_jsonl, write_json, write_jsonl
from factory.lib.gates import GateConfig, apply_gates, label_shortfalls, text_problem
from factory.lib.mislabels import likely_mislabels
from factory.lib.pii import scrub_rows
from factory.lib.schemas import ExampleSchema, accepted_table_problems

DEFAULTS = GateConfig()


class GatesConfig(dg.Config):
    min_chars: int = Field(default=DEFAULTS.min_chars, description="shorter inputs are trivial")
    max_chars: int = Field(default=DEFAULTS.max_chars, description="longer inputs are rejected")
    min_words: int = Field(default=DEFAULTS.min_words, description="fewer distinct words: trivial")
    max_input_tokens: int = Field(default=DEFAULTS.max_input_tokens, description="with the base model's tokenizer")
    near_duplicate_threshold: float = Field(default=DEFAULTS.near_duplicate_threshold,
                                            description="character 5-gram Jaccard (MinHash LSH): near copies of an eval "
                                                        "row are leaks; near copies of each other share a split")
    semantic_duplicate_threshold: float = Field(default=DEFAULTS.semantic_duplicate_threshold,
                                                description="cosine between rows of different families")
    semantic_leakage_threshold: float = Field(default=DEFAULTS.semantic_leakage_threshold, description="cosine to any eval row")
    reworded_copy_threshold: float = Field(default=DEFAULTS.reworded_copy_threshold,
                                           description="cosine from which rows with the same content words are one "
                                                       "reworded: a leak of an eval row, or one cluster in the split")
    max_label_share: float = Field(default=DEFAULTS.max_label_share, description="generated rows of a label beyond this "
                                                                                 "share of all rows are trimmed")
    min_label_share: float = Field(default=0.0, description="labels under this share are listed as shortfalls, which "
                                                            "the next generation plan fills")
    use_embeddings: bool = Field(default=True, description="run the semantic and mislabel gates (MiniLM by default)")
    mislabel_sources: list[str] = Field(default=["import"], description="row sources whose labels confident learning "
                                                                        "checks; flagged rows go to mislabels.jsonl for "
                                                                        "review, not into training")
    scrub_pii: bool = Field(default=True, description="replace emails, phone and card numbers, IBANs, IPs and keys in "
                                                      "seed and generated rows by <KIND>, as the request log does; "
                                                      "the kinds found stay on the row")
    seed: int = Field(default=0, description="folds of the mislabel classifier")


@dg.asset(partitions_def=dataset_versions, automation_condition=AFTER_UPSTREAM, deps=["seed_examples", "judged_examples", "eval_sets"], kinds={"jsonl"})
def accepted_examples(
    context: dg.AssetExecutionContext, config: GatesConfig, storage: FactoryStorage, embedder: Embedder, base_model: BaseModel
) -> dg.MaterializeResult:
    """Seed and generated (judged) rows, PII scrubbed, that passed every quality gate; rejected.jsonl keeps the rest with the
    gate and reason, mislabels.jsonl the rows whose labels need a person's look."""
    key = context.partition_key
    task = storage.task_for(key)
    contract = task.build_contract()
    candidates = read_jsonl(storage.asset_dir(key, "seed_examples") / "seeds.jsonl")
    candidates += read_jsonl(storage.asset_dir(key, "judged_examples") / "judged.jsonl")
    eval_dir = storage.asset_dir(key, "eval_sets")
    eval_texts = [row["text"] for path in sorted(eval_dir.glob("*.jsonl")) for row in read_jsonl(path)]
    pii_rows = []
    if config.scrub_pii:
        candidates, pii_rows = scrub_rows(candidates)
    gate_config = GateConfig(**config.model_dump(include=set(GateConfig.__dataclass_fields__)))
    embeddings = eval_embeddings = None
    if config.use_embeddings:
        # One call, so the model loads once.
        both = embedder.encode(["" if text_problem(row) else row["text"] for row in candidates] + eval_texts)
        embeddings, eval_embeddings = both[: len(candidates)], both[len(candidates):]
    accepted, rejected = apply_gates(candidates, contract, eval_texts, task.system_prompt, gate_config, embeddings,
                                     eval_embeddings, count_tokens=base_model.token_counter())
    mislabels = []
    if embeddings is not None and any(row.get("source") in config.mislabel_sources for row in accepted):
        accepted, mislabels = _set_aside_mislabels(accepted, candidates, embeddings, config)
        rejected += [{**row, "gate": "likely_mislabel", "reason": f"looks like {row['suggested_label']!r} "
                      f"(confidence in the given label {row['label_confidence']})"} for row in mislabels]
    shortfalls = label_shortfalls(accepted, getattr(contract, "labels", {}), config.min_label_share)
    folder = storage.asset_dir(key, "accepted_examples")
    rejected_by_gate = dict(Counter(r["gate"] for r in rejected))
    with atomic_dir(folder) as scratch:
        write_jsonl(scratch / "rejected.jsonl", rejected)
        write_jsonl(scratch / "mislabels.jsonl", mislabels)
        write_jsonl(scratch / "accepted.jsonl", accepted)
        write_json(scratch / "summary.json", {"input": len(candidates), "accepted": len(accepted),
                                               "rejected_by_gate": rejected_by_gate, "label_shortfalls": shortfalls,
                                               "pii_scrubbed_rows": len(pii_rows)})
    path = folder / "accepted.jsonl"
    return dg.MaterializeResult(metadata={
        **table_metadata(accepted, ExampleSchema, path),
        "input_rows": len(candidates),
        "rejected_rows": len(rejected),
        "rejected_by_gate": dg.MetadataValue.json(rejected_by_gate),
        "likely_mislabels": len(mislabels),
        "label_shortfalls": dg.MetadataValue.json(shortfalls),
        "pii_scrubbed_rows": len(pii_rows),
        "pii_kinds": dg.MetadataValue.json(dict(Counter(k for r in pii_rows for k in r["kinds"]))),
    })


def _set_aside_mislabels(accepted: list[dict], candidates: list[dict], embeddings, config: GatesConfig):
    """Accepted rows minus the checked sources' likely mislabels, and those rows with the label the classifier prefers."""
    position = {row["id"]: i for i, row in enumerate(candidates)}
    suspects = likely_mislabels(embeddings[[position[row["id"]] for row in accepted]], [row["target"] for row in accepted],
                                config.seed)
    flagged = {s.index: s for s in suspects if accepted[s.index].get("source") in config.mislabel_sources}
    kept = [row for i, row in enumerate(accepted) if i not in flagged]
    review = [{**accepted[i], "suggested_label": s.suggested, "label_confidence": s.self_confidence}
              for i, s in sorted(flagged.items())]
    return kept, review


@dg.asset_check(asset=accepted_examples, blocking=True)
def accepted_examples_hold(context: dg.AssetCheckExecutionContext, storage: FactoryStorage) -> dg.AssetCheckResult:
    """Accepted rows match the schema, accepted + rejected = input, and every label keeps at least one row."""
    key = context.partition_key
    folder = storage.asset_dir(key, "accepted_examples")
    accepted, rejected = read_jsonl(folder / "accepted.jsonl"), read_jsonl(folder / "rejected.jsonl")
    expected = len(read_jsonl(storage.asset_dir(key, "seed_examples") / "seeds.jsonl"))
    expected += len(read_jsonl(storage.asset_dir(key, "judged_examples") / "judged.jsonl"))
    labels = getattr(storage.task_for(key).build_contract(), "labels", None)
    problems = accepted_table_problems(accepted, rejected, expected, labels)
    return dg.AssetCheckResult(passed=not problems, metadata={"problems": dg.MetadataValue.json(problems)})
