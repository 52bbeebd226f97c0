import dagster as dg

from factory.defs.partitions import served_tasks
from factory.integrations.storage import FactoryStorage
from factory.lib.errors import DataError
from factory.lib.files import read_jsonl, write_jsonl
from factory.lib.review import assign_splits, read_review, reviewed_rows
from factory.lib.task import load_task


@dg.asset(partitions_def=served_tasks, deps=["review_queue"], kinds={"jsonl"})
def reviewed_examples(context: dg.AssetExecutionContext, storage: FactoryStorage) -> dg.MaterializeResult:
    """The rows a person reviewed, each with its split recorded: the task's production eval set fills first, and only
    rows beyond it become training seeds, so the model is never scored on a row it was trained on."""
    name = context.partition_key
    task = load_task(storage.task_dir(name))
    folder = storage.traffic_dir(name)
    try:
        reviewed = reviewed_rows(read_review(folder / "review.csv"), set(task.contract.labels or {}), folder / "review.csv")
    except DataError as exc:
        raise dg.Failure(str(exc)) from None
    ledger = folder / "reviewed.jsonl"
    previous = {r["request_id"]: r["split"] for r in read_jsonl(ledger)} if ledger.exists() else {}
    rows = assign_splits(reviewed, previous, task.production.production_eval_size)
    write_jsonl(ledger, rows)
    # Into the task itself: a reviewed production row is task data (PII scrubbed before it was ever written).
    write_jsonl(task.path("production"), [r for r in rows if r["split"] == "eval"])
    write_jsonl(task.path("production_seeds"), [r for r in rows if r["split"] == "train"])
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(rows), "production_eval_rows": sum(r["split"] == "eval" for r in rows),
        "training_seed_rows": sum(r["split"] == "train" for r in rows),
        "new_rows": sum(r["request_id"] not in previous for r in rows),
        "path": dg.MetadataValue.path(str(ledger)),
    })
