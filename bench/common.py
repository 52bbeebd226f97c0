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
