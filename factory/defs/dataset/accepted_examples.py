from collections import Counter

import dagster as dg
from pydantic import Field

from factory.defs.automation import AFTER_UPSTREAM
from factory.defs.metadata import table_metadata
from factory.defs.partitions import dataset_versions
from factory.integrations.resources import Embedder
from factory.integrations.storage import FactoryStorage
from factory.lib.files import atomic_dir, read_jsonl, write_json, write_jsonl
from factory.lib.gates import GateConfig, apply_gates
from factory.lib.pii import scrub_rows
from factory.lib.schemas import ExampleSchema, accepted_table_problems


class GatesConfig(dg.Config):
    min_chars: int = Field(default=8, description="shorter inputs are trivial")
    max_chars: int = Field(default=4000, description="longer inputs are rejected")
    semantic_duplicate_threshold: float = Field(default=0.97, description="cosine between rows of different families")
    semantic_leakage_threshold: float = Field(default=0.97, description="cosine to any eval row")
    use_embeddings: bool = Field(default=True, description="run the semantic gates (MiniLM by default)")
    scrub_pii: bool = Field(default=True, description="replace emails, phone and card numbers, IBANs, IPs and keys in "
                                                      "seed and generated rows by <KIND>, as the request log does; "
                                                      "the kinds found stay on the row")


@dg.asset(partitions_def=dataset_versions, automation_condition=AFTER_UPSTREAM, deps=["seed_examples", "generated_examples", "eval_sets"], kinds={"jsonl"})
def accepted_examples(
    context: dg.AssetExecutionContext, config: GatesConfig, storage: FactoryStorage, embedder: Embedder
) -> dg.MaterializeResult:
    """Seed and generated rows, PII scrubbed, that passed every quality gate; rejected.jsonl keeps the rest with the
    gate and reason."""
    key = context.partition_key
    task = storage.task_for(key)
    candidates = read_jsonl(storage.asset_dir(key, "seed_examples") / "seeds.jsonl")
    candidates += read_jsonl(storage.asset_dir(key, "generated_examples") / "generated.jsonl")
    eval_dir = storage.asset_dir(key, "eval_sets")
    eval_texts = [row["text"] for path in sorted(eval_dir.glob("*.jsonl")) for row in read_jsonl(path)]
    pii_rows = []
    if config.scrub_pii:
        candidates, pii_rows = scrub_rows(candidates)
    gate_config = GateConfig(**config.model_dump(exclude={"use_embeddings", "scrub_pii"}))
    embeddings = eval_embeddings = None
    if config.use_embeddings:
        # One call, so the model loads once.
        both = embedder.encode([str(row.get("text", "")) for row in candidates] + eval_texts)
        embeddings, eval_embeddings = both[: len(candidates)], both[len(candidates):]
    accepted, rejected = apply_gates(candidates, task.build_contract(), eval_texts, task.system_prompt,
                                     gate_config, embeddings, eval_embeddings)
    folder = storage.asset_dir(key, "accepted_examples")
    with atomic_dir(folder) as scratch:
        write_jsonl(scratch / "rejected.jsonl", rejected)
        write_jsonl(scratch / "accepted.jsonl", accepted)
        write_json(scratch / "summary.json", {"input": len(candidates), "accepted": len(accepted),
                                               "rejected_by_gate": dict(Counter(r["gate"] for r in rejected)),
                                               "pii_scrubbed_rows": len(pii_rows)})
    path = folder / "accepted.jsonl"
    return dg.MaterializeResult(metadata={
        **table_metadata(accepted, ExampleSchema, path),
        "input_rows": len(candidates),
        "rejected_rows": len(rejected),
        "rejected_by_gate": dg.MetadataValue.json(dict(Counter(r["gate"] for r in rejected))),
        "pii_scrubbed_rows": len(pii_rows),
        "pii_kinds": dg.MetadataValue.json(dict(Counter(k for r in pii_rows for k in r["kinds"]))),
    })


@dg.asset_check(asset=accepted_examples, blocking=True)
def accepted_examples_hold(context: dg.AssetCheckExecutionContext, storage: FactoryStorage) -> dg.AssetCheckResult:
    """Accepted rows match the schema, accepted + rejected = input, and every label keeps at least one row."""
    key = context.partition_key
    folder = storage.asset_dir(key, "accepted_examples")
    accepted, rejected = read_jsonl(folder / "accepted.jsonl"), read_jsonl(folder / "rejected.jsonl")
    expected = len(read_jsonl(storage.asset_dir(key, "seed_examples") / "seeds.jsonl"))
    expected += len(read_jsonl(storage.asset_dir(key, "generated_examples") / "generated.jsonl"))
    labels = getattr(storage.task_for(key).build_contract(), "labels", None)
    problems = accepted_table_problems(accepted, rejected, expected, labels)
    return dg.AssetCheckResult(passed=not problems, metadata={"problems": dg.MetadataValue.json(problems)})
