"""`factory`: create tasks and dataset versions, run the graph, and the embedded-defaults demo."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from factory.lib.errors import DataError


def data_root() -> Path:
    return Path(os.environ.get("FACTORY_DATA_ROOT", "data")).resolve()


def instance():
    """The local Dagster instance the UI reads: DAGSTER_HOME, by default <data root>/dagster."""
    import dagster as dg

    home = Path(os.environ.setdefault("DAGSTER_HOME", str(data_root() / "dagster")))
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists() and Path("dagster.yaml").exists():
        shutil.copy("dagster.yaml", home / "dagster.yaml")
    return dg.DagsterInstance.get()


def new_version(task: str) -> str:
    from factory.lib.task import load_task
    from factory.lib.versions import next_version_key

    load_task(data_root() / "tasks" / task)  # fail now, naming the file, rather than inside a run
    inst = instance()
    key = next_version_key(inst.get_dynamic_partitions("dataset_version"), task)
    inst.add_dynamic_partitions("dataset_version", [key])
    return key


def run_version(key: str, recipe: str) -> bool:
    from factory.pipeline import materialize_version, recipe_config

    return materialize_version(key, instance(), run_config=recipe_config(recipe), raise_on_error=False).success


def print_summary(key: str, seconds: float) -> None:
    from factory.lib.report import comparison_rows, markdown_table

    folder = data_root() / "versions" / key
    report = json.loads((folder / "eval_report" / "report.json").read_text())
    print(f"\nTest set of {key} ({seconds / 60:.1f} min):\n")
    print(markdown_table(comparison_rows(report["models"], order=report["model_order"])))
    gates = report["release_gates"]
    print("\nRelease gates: " + ", ".join(f"{n} {'passed' if g['passed'] else 'FAILED'} ({g['value']:.3f} vs {g['threshold']})"
                                          for n, g in gates.items()))
    gguf = next((folder / "gguf_model").glob("model-*.gguf"))
    print(f"\nGGUF:        {gguf}\nEval report: {folder / 'eval_report' / 'report.md'}\n"
          f"MLflow:      make mlflow, then http://127.0.0.1:5000 (runs tagged dagster.partition={key})\n"
          f"Dagster UI:  make ui, then http://127.0.0.1:3000 (partition {key})")


def cmd_demo(args) -> int:
    started = time.perf_counter()
    key = new_version(args.task)
    print(f"dataset version {key}: materialising every stage with recipe '{args.recipe}'", flush=True)
    if not run_version(key, args.recipe):
        print(f"the run for {key} failed; see the log above or the Dagster UI", file=sys.stderr)
        return 1
    print_summary(key, time.perf_counter() - started)
    return 0


def cmd_version_new(args) -> int:
    print(new_version(args.task))
    return 0


def cmd_run(args) -> int:
    started = time.perf_counter()
    if not run_version(args.version, args.recipe):
        return 1
    print_summary(args.version, time.perf_counter() - started)
    return 0


def cmd_task_import(args) -> int:
    from factory.lib.importer import ImportOptions, import_task

    options = ImportOptions(
        text_field=args.text_field, label_field=args.label_field, id_field=args.id_field,
        split_field=args.split_field, test_value=args.test_value, test_per_label=args.test_per_label,
        dev_per_label=args.dev_per_label, golden_per_label=args.golden_per_label, seed=args.seed,
        answer_words=args.answer_words, distinct_first_words=args.distinct_first_words,
    )
    folder = import_task(args.file, args.name, data_root() / "tasks", options, test_source=args.test_file)
    print(f"task written to {folder}; next: factory version new --task {args.name}")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="factory", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="new version of a task, every stage, then the comparison table")
    demo.add_argument("--task", default="support_email")
    demo.add_argument("--recipe", default="default", help="recipe under factory/recipes/ or a YAML path")
    demo.set_defaults(func=cmd_demo)

    run = sub.add_parser("run", help="materialise every stage for an existing dataset version")
    run.add_argument("version", help="e.g. support_email.v2")
    run.add_argument("--recipe", default="default")
    run.set_defaults(func=cmd_run)

    version = sub.add_parser("version", help="dataset versions (Dagster partitions)").add_subparsers(dest="action", required=True)
    new = version.add_parser("new", help="add the next version of a task")
    new.add_argument("--task", required=True)
    new.set_defaults(func=cmd_version_new)

    task = sub.add_parser("task", help="tasks under <data root>/tasks").add_subparsers(dest="action", required=True)
    imp = task.add_parser("import", help="create a task from a labelled CSV or JSONL file")
    imp.add_argument("file")
    imp.add_argument("--name", required=True)
    imp.add_argument("--text-field", default="text")
    imp.add_argument("--label-field", default="label")
    imp.add_argument("--id-field")
    imp.add_argument("--test-file", help="a second file whose rows all become the test set (e.g. an original test split)")
    imp.add_argument("--split-field", help="column holding an original split; its --test-value rows become the test set")
    imp.add_argument("--test-value", default="test")
    imp.add_argument("--test-per-label", type=int, default=10)
    imp.add_argument("--dev-per-label", type=int, default=5)
    imp.add_argument("--golden-per-label", type=int, default=3)
    imp.add_argument("--seed", type=int, default=0)
    imp.add_argument("--answer-words", action="store_true",
                     help="the model answers a label in words (card_arrival -> card arrival); scores still use the label")
    imp.add_argument("--distinct-first-words", action="store_true",
                     help="answers in words, each starting with a word no other answer starts with (card_arrival -> "
                          "arrival card), so the classify path decides from one forward pass; implies --answer-words")
    imp.set_defaults(func=cmd_task_import)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
