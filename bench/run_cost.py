"""Question 3: what a retrain costs: wall time and peak memory of every stage of one run.

    .venv/bin/python bench/run_cost.py --task-dir data/tasks/support_email

Materialises the whole graph for a fresh version of the task on a separate data root, then
reads each step's duration from Dagster's event log and each script's peak memory from the
summary it writes (training, export and evaluation run as their own processes).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import write_result  # noqa: E402

from factory.lib.files import peak_rss_mib  # noqa: E402

SCRIPT_SUMMARIES = {"lora_adapter": ["lora_adapter/summary.json"], "gguf_model": ["gguf_model/summary.json"],
                    "baseline_report": ["baseline_report/base_model/summary.json"],
                    "eval_report": ["eval_report/gguf/summary.json", "eval_report/finetuned_hf/summary.json"]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task-dir", required=True)
    parser.add_argument("--work", default="data/bench_run", help="data root for this run (model cache shared with data/cache)")
    parser.add_argument("--cache", default="data/cache")
    parser.add_argument("--recipe", default="default")
    parser.add_argument("--name", default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    import dagster as dg

    from factory.defs.resources import factory_resources
    from factory.pipeline import materialize_version, recipe_config

    source = Path(args.task_dir).resolve()
    work = Path(args.work).resolve()
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(source, work / "tasks" / source.name)
    key = f"{source.name}.v1"
    started = time.perf_counter()
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("dataset_version", [key])
        result = materialize_version(key, instance, factory_resources(str(work), str(Path(args.cache).resolve())),
                                     recipe_config(args.recipe), raise_on_error=False)
    total = time.perf_counter() - started
    version = work / "versions" / key
    stages = {}
    for event in result.all_events:
        if event.is_step_success:
            step = event.step_key
            peaks = [json.loads((version / rel).read_text()).get("peak_rss_mib") for rel in SCRIPT_SUMMARIES.get(step, [])
                     if (version / rel).exists()]
            stages[step] = {"seconds": round(event.event_specific_data.duration_ms / 1000, 1),
                            "script_peak_rss_mib": max((p for p in peaks if p), default=None)}
    report = json.loads((version / "eval_report" / "report.json").read_text())
    payload = {"task": source.name, "recipe": args.recipe, "total_seconds": round(total, 1), "stages": stages,
               "orchestrator_peak_rss_mib": peak_rss_mib(),
               "test": {name: sets.get("test") for name, sets in report["models"].items()}}
    for step, info in stages.items():
        print(f"{step:45s} {info['seconds']:8.1f}s  {info['script_peak_rss_mib'] or '':>8} MiB")
    print(f"total {total:.0f}s")
    write_result(args.name or f"run_cost_{source.name}", payload, args.out)
    return payload


if __name__ == "__main__":
    main()
