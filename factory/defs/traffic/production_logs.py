import dagster as dg
from pydantic import Field

from factory.defs.partitions import served_tasks
from factory.integrations.request_log import log_files, read_ranges
from factory.integrations.storage import FactoryStorage
from factory.lib.files import read_jsonl, write_jsonl


class LogRangesConfig(dg.Config):
    ranges: dict[str, list[int]] = Field(default_factory=dict, description="log file -> [start, end) byte offsets of "
                                         "the new lines (the sensor fills it); empty: every log file, whole")


@dg.asset(partitions_def=served_tasks, kinds={"jsonl"})
def production_logs(context: dg.AssetExecutionContext, config: LogRangesConfig, storage: FactoryStorage) -> dg.MaterializeResult:
    """Every request and feedback line the server logged for a task, each kept once: the sensor hands over the byte
    ranges past its cursor, and lines already in the table (a retried run, a full re-read) are not added again."""
    folder = storage.traffic_dir(context.partition_key)
    ranges = config.ranges or {p.name: [0, p.stat().st_size] for p in log_files(folder / "logs")}
    new = read_ranges(folder / "logs", ranges)
    table = folder / "production_logs.jsonl"
    existing = read_jsonl(table) if table.exists() else []
    known = {row["id"] for row in existing}
    added = [row for row in new.records if row.get("id") and row["id"] not in known]
    write_jsonl(table, existing + added)
    if new.malformed:
        context.log.warning(f"{len(new.malformed)} log lines are not JSON objects and were skipped: {new.malformed[:5]}")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(existing) + len(added), "rows_added": len(added),
        "already_present": len(new.records) - len(added), "malformed_lines": len(new.malformed),
        "requests": sum(r.get("type") == "request" for r in existing + added),
        "feedback": sum(r.get("type") == "feedback" for r in existing + added),
        "path": dg.MetadataValue.path(str(table)),
    })
