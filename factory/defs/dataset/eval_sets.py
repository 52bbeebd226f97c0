import dagster as dg

from factory.defs.automation import ON_NEW_VERSION
from factory.defs.metadata import table_metadata
from factory.defs.partitions import dataset_versions
from factory.integrations.storage import FactoryStorage
from factory.lib.examples import load_examples
from factory.lib.files import atomic_dir, sha256_rows, write_jsonl
from factory.lib.schemas import ExampleSchema
from factory.lib.task import EVAL_SETS, PRODUCTION_SET, REQUIRED_EVAL_SETS


@dg.asset(partitions_def=dataset_versions, automation_condition=ON_NEW_VERSION, kinds={"jsonl"})
def eval_sets(context: dg.AssetExecutionContext, storage: FactoryStorage) -> dg.MaterializeResult:
    """Dev, test, golden and adversarial rows, fixed before any training; the golden set is hash-locked."""
    task = storage.task_for(context.partition_key)
    contract = task.build_contract()
    for name in REQUIRED_EVAL_SETS:
        if not task.path(name).exists():
            raise dg.Failure(f"{task.path(name)}: the {name} set is missing. Every task needs {' and '.join(REQUIRED_EVAL_SETS)} "
                             "rows before anything is trained: write them, or import the task with `factory task import`")
    sets = {name: load_examples(task.path(name), contract, source=name) for name in (*EVAL_SETS, PRODUCTION_SET)
            if task.path(name).exists()}
    for name in REQUIRED_EVAL_SETS:
        if not sets[name]:
            raise dg.Failure(f"{task.path(name)}: the {name} set has no rows; it needs at least one row per label")
    golden_hash = sha256_rows(sets.get("golden", []))
    if task.golden_sha256 != golden_hash:
        raise dg.Failure(
            f"{task.folder / 'task.yaml'}: golden_sha256 is {task.golden_sha256!r} but {task.path('golden')} hashes to "
            f"{golden_hash!r}. The golden set is locked: restore it, or record the new hash on purpose."
        )
    folder = storage.asset_dir(context.partition_key, "eval_sets")
    with atomic_dir(folder) as scratch:
        for name, rows in sets.items():
            write_jsonl(scratch / f"{name}.jsonl", rows)
    everything = [row for rows in sets.values() for row in rows]
    return dg.MaterializeResult(
        metadata={**table_metadata(everything, ExampleSchema, folder),
                  **{f"rows_{name}": len(rows) for name, rows in sets.items()}, "golden_sha256": golden_hash},
        data_version=dg.DataVersion(sha256_rows(everything)),
    )
