import dagster as dg

from factory.defs.automation import ON_NEW_VERSION
from factory.defs.metadata import table_metadata
from factory.defs.partitions import dataset_versions
from factory.integrations.storage import FactoryStorage
from factory.lib.examples import load_examples
from factory.lib.files import sha256_rows, write_jsonl
from factory.lib.schemas import ExampleSchema


@dg.asset(partitions_def=dataset_versions, automation_condition=ON_NEW_VERSION, kinds={"jsonl"})
def seed_examples(context: dg.AssetExecutionContext, storage: FactoryStorage) -> dg.MaterializeResult:
    """Hand-written examples of the task, and reviewed production requests beyond the production eval set, validated against
    the output contract and frozen into this version."""
    task = storage.task_for(context.partition_key)
    rows = load_examples(task.path("seeds"), task.build_contract(), source="seed")
    if task.path("production_seeds").exists():
        rows += load_examples(task.path("production_seeds"), task.build_contract(), source="production")
    path = write_jsonl(storage.asset_dir(context.partition_key, "seed_examples") / "seeds.jsonl", rows)
    return dg.MaterializeResult(metadata=table_metadata(rows, ExampleSchema, path), data_version=dg.DataVersion(sha256_rows(rows)))
