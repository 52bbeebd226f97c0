"""What every benchmark records beside its figures: when, on what machine, at which commit."""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    cpuinfo = {}
    for line in Path("/proc/cpuinfo").read_text().split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        cpuinfo[key.strip()] = value.strip()
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    # A VM's model name can be just "AMD EPYC": family and model tell its generations apart (26 is Zen 5, 25 Zen 3/4).
    flags = set(cpuinfo.get("flags", "").split())
    return {"cores": os.cpu_count(), "memory_gib": round(mem_kb / 2**20, 1), "cpu": cpuinfo.get("model name", platform.processor()),
            "cpu_family": cpuinfo.get("cpu family"), "cpu_model": cpuinfo.get("model"),
            "cpu_flags": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}), "python": platform.python_version()}


def commit() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):  # a copy without .git, such as a lent GPU machine's
        return os.environ.get("FACTORY_COMMIT", "unknown")


def write_result(name: str, payload: dict, out_dir: str | Path | None = None) -> Path:
    out = Path(out_dir) if out_dir else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    record = {"benchmark": name, "date": dt.date.today().isoformat(), "commit": commit(), "machine": machine(), **payload}
    path.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return path


def factory(*args: str, env: dict) -> None:
    """One `factory` command as a user types it; exit 3 (a release gate stopped it) is a result here, not a failure."""
    import sys

    done = subprocess.run([sys.executable, "-m", "factory.cli", *args], env={**os.environ, **env})
    if done.returncode not in (0, 3):
        raise SystemExit(f"factory {' '.join(args)} exited {done.returncode}")


def stage_seconds(dagster_home: Path, key: str) -> dict[str, float]:
    """Each step's duration in the version's latest run, from the Dagster instance the command used."""
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(dagster_home))
    record = next(iter(instance.get_run_records(dg.RunsFilter(tags={"dagster/partition": key}), limit=1)), None)
    if record is None:
        return {}
    return {e.step_key: e.dagster_event.event_specific_data.duration_ms / 1000
            for e in instance.all_logs(record.dagster_run.run_id) if e.is_dagster_event and e.dagster_event.is_step_success}
