"""When the graph runs by itself: a new dataset version starts its root assets, and every later stage follows its
inputs, never past a failed blocking check (a failed data check or release gate stops automation as it stops a run)."""
import hashlib
import json
import re

import dagster as dg

from factory.defs.jobs import factory_pipeline, review_intake, traffic_intake
from factory.defs.partitions import dataset_versions, served_tasks
from factory.integrations.request_log import pending_ranges
from factory.integrations.storage import FactoryStorage
from factory.lib.files import read_jsonl, sha256_file
from factory.lib.task import load_task
from factory.lib.versions import TASK_NAME_PATTERN, next_version_key, parse_version_key

ON_NEW_VERSION = dg.AutomationCondition.on_missing()
AFTER_UPSTREAM = dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()

# Declarative automation needs a sensor to evaluate it; this one runs as soon as the daemon does (`make ui`).
version_automation = dg.AutomationConditionSensorDefinition(
    "version_automation", target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=30,
)


@dg.sensor(job=traffic_intake, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def production_log_sensor(context: dg.SensorEvaluationContext, storage: FactoryStorage) -> dg.SensorResult:
    """Each new complete line of a task's request logs goes to `production_logs` exactly once. The cursor is a byte
    offset per log file, kept by Dagster across daemon restarts; files are never renamed, so rotation only adds files,
    and a line still being written is taken whole on a later tick."""
    cursor = json.loads(context.cursor) if context.cursor else {}
    known = set(context.instance.get_dynamic_partitions(served_tasks.name))
    runs, new_tasks = [], []
    for task, logs in _traffic(storage, "logs"):
        ranges, cursor[task] = pending_ranges(logs, cursor.get(task, {}))
        if not ranges:
            continue
        if task not in known:
            new_tasks.append(task)
        digest = hashlib.sha256(json.dumps(ranges, sort_keys=True).encode()).hexdigest()[:16]
        runs.append(dg.RunRequest(run_key=f"{task}:{digest}", partition_key=task,
                                  run_config={"ops": {"production_logs": {"config": {"ranges": ranges}}}}))
    return dg.SensorResult(run_requests=runs, cursor=json.dumps(cursor, sort_keys=True),
                           dynamic_partitions_requests=[served_tasks.build_add_request(new_tasks)] if new_tasks else [])


@dg.sensor(job=review_intake, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def review_file_sensor(context: dg.SensorEvaluationContext, storage: FactoryStorage) -> dg.SensorResult:
    """A saved edit of a task's `review.csv` materialises `reviewed_examples` for that task."""
    cursor = json.loads(context.cursor) if context.cursor else {}
    runs = []
    for task, review in _traffic(storage, "review.csv"):
        digest = sha256_file(review)
        if cursor.get(task) != digest:
            cursor[task] = digest
            runs.append(dg.RunRequest(run_key=f"{task}:{digest[:16]}:{review.stat().st_mtime_ns}", partition_key=task))
    return dg.SensorResult(run_requests=runs, cursor=json.dumps(cursor, sort_keys=True))


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def new_version_sensor(context: dg.SensorEvaluationContext, storage: FactoryStorage) -> dg.SensorResult:
    """When a task's reviewed training seeds not yet in its latest version reach `production.retrain_after`, add the
    next dataset version; its stages then run through automation, gated as any run is."""
    versions = context.instance.get_dynamic_partitions(dataset_versions.name)
    added = []
    for task, ledger in _traffic(storage, "reviewed.jsonl"):
        keys = [k for k in versions if parse_version_key(k)[0] == task]
        if not keys:
            continue
        latest = max(keys, key=lambda k: parse_version_key(k)[1])
        seeds = storage.asset_dir(latest, "seed_examples") / "seeds.jsonl"
        if not seeds.exists():  # the latest version has not taken its seeds yet: one version at a time
            continue
        included = {row["id"] for row in read_jsonl(seeds)}
        pending = sum(row["split"] == "train" and row["id"] not in included for row in read_jsonl(ledger))
        if pending >= load_task(storage.task_dir(task)).production.retrain_after:
            added.append(next_version_key(versions, task))
            context.log.info(f"{task}: {pending} reviewed training rows since {latest}: adding {added[-1]}")
    if not added:
        return dg.SensorResult(skip_reason="no task has enough new reviewed rows")
    return dg.SensorResult(dynamic_partitions_requests=[dataset_versions.build_add_request(added)])


@dg.schedule(job=factory_pipeline, cron_schedule="0 2 * * *", execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.RUNNING)
def nightly_retrain(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    """Every night, the latest version of each task retrained with its recipe; the run key holds the date, so a retried
    tick starts nothing twice. It runs whenever the daemon does (`make ui`); stop it in the UI (Automation) or with
    `dagster schedule stop nightly_retrain`."""
    latest: dict[str, tuple[int, str]] = {}
    for key in context.instance.get_dynamic_partitions(dataset_versions.name):
        task, number = parse_version_key(key)
        latest[task] = max(latest.get(task, (0, "")), (number, key))
    day = context.scheduled_execution_time.strftime("%Y-%m-%d")
    return [dg.RunRequest(run_key=f"nightly:{key}:{day}", partition_key=key) for _, key in sorted(latest.values())]


def _traffic(storage: FactoryStorage, name: str):
    """(task, path) for every task folder under <data root>/traffic that holds `name`."""
    for path in sorted((storage.root / "traffic").glob(f"*/{name}")):
        if re.match(TASK_NAME_PATTERN, path.parent.name):
            yield path.parent.name, path
