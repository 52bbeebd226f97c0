from collections import Counter

import dagster as dg
from pydantic import Field

from factory.defs.automation import AFTER_UPSTREAM
from factory.defs.metadata import table_metadata
from factory.defs.partitions import dataset_versions
from factory.integrations.storage import FactoryStorage
from factory.lib.files import atomic_dir, read_jsonl, write_jsonl
from factory.lib.schemas import SplitSchema
from factory.lib.splits import split_examples


class SplitConfig(dg.Config):
    validation_fraction: float = Field(default=0.1, description="share of row families held out for validation loss")
    seed: int = Field(default=0, description="same rows and seed, same split")


@dg.asset(partitions_def=dataset_versions, automation_condition=AFTER_UPSTREAM, deps=["accepted_examples"], kinds={"jsonl"})
def dataset_splits(context: dg.AssetExecutionContext, config: SplitConfig, storage: FactoryStorage) -> dg.MaterializeResult:
    """Train and validation rows: seeded, stratified by target, a near-duplicate cluster (a seed, its variants and near
    copies) always on one side."""
    key = context.partition_key
    task = storage.task_for(key)
    rows = read_jsonl(storage.asset_dir(key, "accepted_examples") / "accepted.jsonl")
    contract = task.build_contract()
    rows = split_examples(rows, config.validation_fraction, config.seed, stratum=lambda r: contract.stratum(r["target"]))
    folder = storage.asset_dir(key, "dataset_splits")
    with atomic_dir(folder) as scratch:
        write_jsonl(scratch / "validation.jsonl", [r for r in rows if r["split"] == "validation"])
        write_jsonl(scratch / "train.jsonl", [r for r in rows if r["split"] == "train"])
    path = folder / "train.jsonl"
    return dg.MaterializeResult(metadata={
        **table_metadata(rows, SplitSchema, path),
        "rows_by_split": dg.MetadataValue.json(dict(Counter(r["split"] for r in rows))),
    })
