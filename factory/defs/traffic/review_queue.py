import json

import dagster as dg
import numpy as np
from pydantic import Field

from factory.defs.partitions import served_tasks
from factory.integrations.resources import Embedder
from factory.integrations.storage import FactoryStorage
from factory.integrations.tracking import MlflowTracker
from factory.lib.baselines import classical_predictors
from factory.lib.files import read_jsonl, sha256_file, write_json
from factory.lib.review import (
    merge_review,
    read_review,
    review_candidates,
    second_opinion,
    unjudged_records,
    write_review,
)
from factory.lib.task import load_task


class ReviewConfig(dg.Config):
    near_duplicate_similarity: float = Field(default=0.95, description="cosine similarity (MiniLM) at which a request "
                                             "is marked a near-duplicate of a training row")


@dg.asset(partitions_def=served_tasks, deps=["production_logs"], kinds={"csv"},
          automation_condition=dg.AutomationCondition.eager())
def review_queue(context: dg.AssetExecutionContext, config: ReviewConfig, storage: FactoryStorage, embedder: Embedder,
                 tracker: MlflowTracker) -> dg.MaterializeResult:
    """`review.csv`, the requests worth a person's look (corrected through feedback, abstained, low confidence, or
    answered otherwise by the best baseline of the champion's run), each with the model's answer, any correction and the
    training row it nearly duplicates; a person fills `correct_label` and `reviewed`, and their edits are kept.
    Each pass judges only the log rows the last one did not (and requests new feedback corrects): its cost follows the
    new traffic, not the log's size."""
    name = context.partition_key
    task = load_task(storage.task_dir(name))
    folder = storage.traffic_dir(name)
    table = read_jsonl(folder / "production_logs.jsonl")
    progress = folder / "review_progress.json"
    judged = json.loads(progress.read_text())["judged_rows"] if progress.exists() else 0
    records = unjudged_records(table, judged)
    requests = [r for r in records if r.get("type") == "request"]
    champion = tracker.champion(name)
    train = (read_jsonl(storage.asset_dir(champion["dagster.partition"], "dataset_splits") / "train.jsonl")
             if champion else [])
    baseline, best = None, None
    if train and requests:  # candidates come from requests, so the near-duplicate pass below runs only in this case
        encoder = embedder.load()
        report = json.loads((storage.asset_dir(champion["dagster.partition"], "eval_report") / "report.json").read_text())
        best = second_opinion(report)
        train_embeddings = _train_embeddings(folder, champion["dagster.partition"], storage, train, embedder, encoder)
        predictors = classical_predictors([r["text"] for r in train], [r["target"] for r in train], train_embeddings,
                                          lambda texts: embedder.encode(texts, encoder))
        labels, _ = predictors[best]([r.get("input", "") for r in requests])
        baseline = {r["id"]: label for r, label in zip(requests, labels)}
    candidates = review_candidates(records, task.production.review_below, baseline)
    if train and candidates:
        similarity = embedder.encode([c["text"] for c in candidates], encoder) @ train_embeddings.T
        for candidate, row in zip(candidates, similarity):
            if row.max() >= config.near_duplicate_similarity:
                candidate["near_duplicate_of"] = train[int(np.argmax(row))]["id"]
    path = folder / "review.csv"
    before = read_review(path)
    rows = merge_review(before, candidates)
    write_review(path, rows)
    write_json(progress, {"judged_rows": len(table)})  # after the review file: a pass cut short is judged again
    reasons = [reason for row in rows for reason in row["reasons"].split()]
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(rows), "new_rows": len(rows) - len(before), "log_rows_judged": len(records),
        "awaiting_review": sum(not row["reviewed"] for row in rows),
        "reasons": dg.MetadataValue.json({r: reasons.count(r) for r in sorted(set(reasons))}),
        "baseline": best or "none (no released model yet)",
        "champion": champion["dagster.partition"] if champion else "none",
        "path": dg.MetadataValue.path(str(path)),
    })


def _train_embeddings(folder, partition: str, storage: FactoryStorage, train: list[dict], embedder: Embedder, encoder):
    """The champion's training rows embedded once per champion (and training file), not on every pass."""
    train_file = storage.asset_dir(partition, "dataset_splits") / "train.jsonl"
    cached = folder / ".review_cache" / f"{partition}-{sha256_file(train_file)[:16]}.npy"
    if cached.exists():
        return np.load(cached)
    embeddings = embedder.encode([r["text"] for r in train], encoder)
    cached.parent.mkdir(exist_ok=True)
    scratch = cached.with_suffix(".partial.npy")
    np.save(scratch, embeddings)
    scratch.replace(cached)
    return embeddings
