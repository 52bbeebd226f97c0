"""Question 3: what a retrain costs: wall time and peak memory of every stage of one run.

    .venv/bin/python bench/run_cost.py --task-dir data/tasks/support_email
    .venv/bin/python bench/run_cost.py --data-root data --version support_email.v1   # a run already made (the demo's)

Runs `factory version new` and `factory run` for a fresh version of the task on a separate data root and Dagster
home (or takes a version already run), then reads each step's duration from that Dagster instance and each script's
peak memory from the summary it writes (training, export and evaluation run as their own processes).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import factory, stage_seconds, write_result  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task-dir", help="run a fresh version of this task")
    parser.add_argument("--data-root", help="instead, read a version already run under this data root (its dagster/)")
    parser.add_argument("--version", help="with --data-root: the version, e.g. support_email.v1")
    parser.add_argument("--work", default="data/bench_run", help="data root for this run (model cache shared with data/cache)")
    parser.add_argument("--cache", default="data/cache")
    parser.add_argument("--recipe", default="default")
    parser.add_argument("--name", default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    if args.data_root:
        if not args.version:
            parser.error("--data-root needs --version")
        work, key, total = Path(args.data_root).resolve(), args.version, None
    else:
        if not args.task_dir:
            parser.error("give --task-dir, or --data-root and --version")
        source = Path(args.task_dir).resolve()
        work = Path(args.work).resolve()
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(source, work / "tasks" / source.name)
        env = {"FACTORY_DATA_ROOT": str(work), "DAGSTER_HOME": str(work / "dagster"),
               "FACTORY_CACHE_ROOT": str(Path(args.cache).resolve())}
        key = f"{source.name}.v1"
        started = time.perf_counter()
        factory("version", "new", "--task", source.name, env=env)
        factory("run", key, "--recipe", args.recipe, env=env)
        total = time.perf_counter() - started
    version = work / "versions" / key
    peaks = {}
    for summary in version.glob("*/**/summary.json"):
        peak = json.loads(summary.read_text()).get("peak_rss_mib")
        stage = summary.relative_to(version).parts[0]
        if peak:
            peaks[stage] = max(peaks.get(stage, 0), peak)
    stages = {step: {"seconds": round(seconds, 1), "script_peak_rss_mib": peaks.get(step)}
              for step, seconds in stage_seconds(work / "dagster", key).items()}
    total = round(total if total is not None else sum(s["seconds"] for s in stages.values()), 1)
    report = json.loads((version / "eval_report" / "report.json").read_text())
    payload = {"task": key.rsplit(".", 1)[0], "version": key, "recipe": args.recipe if args.task_dir else None,
               "total_seconds": total, "stages": stages,
               "test": {name: {k: v for k, v in sets["test"].items() if isinstance(v, (int, float))}
                        for name, sets in report["models"].items() if "test" in sets}}
    for step, info in stages.items():
        print(f"{step:45s} {info['seconds']:8.1f}s  {info['script_peak_rss_mib'] or '':>8} MiB")
    print(f"total {total:.0f}s")
    write_result(args.name or f"run_cost_{payload['task']}", payload, args.out)
    return payload


if __name__ == "__main__":
    main()
