import json
from collections import Counter

import dagster as dg
from pydantic import Field

from factory.defs.automation import AFTER_UPSTREAM
from factory.defs.metadata import table_metadata
from factory.defs.partitions import dataset_versions
from factory.integrations.storage import FactoryStorage
from factory.lib.dataset_card import card_markdown, hf_rows
from factory.lib.files import atomic_dir, read_jsonl, write_jsonl
from factory.lib.schemas import SplitSchema
from factory.lib.splits import split_examples


class SplitConfig(dg.Config):
    validation_fraction: float = Field(default=0.1, description="share of row clusters held out for validation loss")
    seed: int = Field(default=0, description="same rows and seed, same split")


@dg.asset(partitions_def=dataset_versions, automation_condition=AFTER_UPSTREAM, deps=["accepted_examples"], kinds={"jsonl", "huggingface"})
def dataset_splits(context: dg.AssetExecutionContext, config: SplitConfig, storage: FactoryStorage) -> dg.MaterializeResult:
    """Train and validation rows: seeded, stratified by target, a near-duplicate cluster (a seed, its variants and near
    copies) always on one side; also a Hugging Face DatasetDict (`hf/`) with a dataset card (README.md)."""
    from datasets import Dataset, DatasetDict

    key = context.partition_key
    task = storage.task_for(key)
    accepted_dir = storage.asset_dir(key, "accepted_examples")
    rows = read_jsonl(accepted_dir / "accepted.jsonl")
    contract = task.build_contract()
    rows = split_examples(rows, config.validation_fraction, config.seed, stratum=lambda r: contract.stratum(r["target"]))
    by_split = {name: [r for r in rows if r["split"] == name] for name in ("train", "validation")}
    folder = storage.asset_dir(key, "dataset_splits")
    with atomic_dir(folder) as scratch:
        write_jsonl(scratch / "validation.jsonl", by_split["validation"])
        write_jsonl(scratch / "train.jsonl", by_split["train"])
        DatasetDict({name: Dataset.from_dict(hf_rows(part)) for name, part in by_split.items()}).save_to_disk(scratch / "hf")
        summary = json.loads((accepted_dir / "summary.json").read_text(encoding="utf-8"))
        (scratch / "README.md").write_text(card_markdown(key, task.description or task.name, rows, summary), encoding="utf-8")
    return dg.MaterializeResult(metadata={
        **table_metadata(rows, SplitSchema, folder / "train.jsonl"),
        "rows_by_split": dg.MetadataValue.json(dict(Counter(r["split"] for r in rows))),
        "dataset_card": dg.MetadataValue.md((folder / "README.md").read_text(encoding="utf-8")),
        "huggingface_dataset": dg.MetadataValue.path(str(folder / "hf")),
    })
