"""`factory`: create tasks and dataset versions, run the graph, and the embedded-defaults demo."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

from factory.lib.errors import DataError
from factory.lib.hardware import usable_cores
from factory.lib.versions import parse_version_key


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
    from factory.lib.versions import check_task_name, next_version_key

    load_task(data_root() / "tasks" / check_task_name(task, where="--task"))  # fail now, naming the file, rather than inside a run
    inst = instance()
    key = next_version_key(inst.get_dynamic_partitions("dataset_version"), task)
    inst.add_dynamic_partitions("dataset_version", [key])
    return key


def run_config(recipe: str | None, config_file: str | None) -> dict | None:
    """Dagster run config: the recipe, then a YAML file's per-asset `ops` config over it (as the UI's launchpad takes)."""
    import yaml

    from factory.pipeline import recipe_config

    config = recipe_config(recipe) if recipe else {"ops": {}}
    if config_file:
        path = Path(config_file)
        if not path.is_file():
            raise DataError(path, "run config file not found")
        extra = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(extra, dict) or not isinstance(extra.get("ops", {}), dict):
            raise DataError(path, "a run config is a mapping with an 'ops' mapping: ops: {asset: {config: {...}}}", field="ops")
        for op, settings in extra.get("ops", {}).items():
            merged = config["ops"].setdefault(op, {"config": {}})
            merged["config"] = {**merged.get("config", {}), **(settings or {}).get("config", {})}
    return config if config["ops"] else None


def run_version(key: str, config: dict | None, assets: tuple[str, ...] | None = None) -> int:
    """Materialise a version; 0 when everything ran and every gate passed, 1 when a step failed, 3 when only a check
    (a data check or a release gate) stopped it."""
    import dagster as dg

    from factory.pipeline import failed_checks, materialize_version

    started = time.perf_counter()
    result = materialize_version(key, instance(), run_config=config, raise_on_error=False, assets=assets)
    checks = failed_checks(result)
    if any(e.asset_key == dg.AssetKey("eval_report") for e in result.get_asset_materialization_events()):
        print_summary(key, time.perf_counter() - started)
    if checks:
        print(f"\n{key}: not released; failed checks: {', '.join(checks)}", file=sys.stderr)
        return 3
    if not result.success:
        print(f"the run for {key} failed; see the log above or the Dagster UI", file=sys.stderr)
        return 1
    return 0


def print_summary(key: str, seconds: float) -> None:
    from factory.lib.report import failed_gates, report_markdown

    folder = data_root() / "versions" / key
    report = json.loads((folder / "eval_report" / "report.json").read_text())
    print(f"\n{key} ({seconds / 60:.1f} min)\n")
    print(report_markdown(report))
    failed = failed_gates(report["release_gates"])
    print("Release gates: " + ("all passed" if not failed else "FAILED: " + ", ".join(failed)))
    chosen = report["release"]
    released = folder / "released_model"
    exported = folder / "gguf_model" / "Modelfile"
    release = json.loads((released / "release.json").read_text()) if (released / "release.json").exists() else None
    print(f"\nHTML report: {folder / 'eval_report' / 'report.html'}\nRepair:      {folder / 'eval_report' / 'repair_targets.json'}")
    if release and release["partition"] == key and chosen["model"]:
        model = "GGUF:        " if release["kind"] == "gguf" else "Encoder:     "
        print(f"Champion:    {release['registered_model']} version {release['version']} (alias champion)\n"
              f"{model}{released / release['model']}\nModel card:  {released / 'MODEL_CARD.md'}")
        print(f"Modelfile:   {released / 'Modelfile'}" if release["kind"] == "gguf" else
              f"Modelfile:   none for the champion (Ollama runs generative GGUF models only); the fine-tune's, "
              f"not released: {exported}")
    elif not chosen["model"]:
        print(f"Champion:    unchanged: the failed gates kept {key} from release (no model card for it)\n"
              f"Modelfile:   the fine-tune's, not released: {exported}")
    print(f"MLflow:      make mlflow, then http://127.0.0.1:5000 (runs tagged dagster.partition={key})\n"
          f"Dagster UI:  make ui, then http://127.0.0.1:3000 (partition {key})")


def cmd_demo(args) -> int:
    from factory.lib.task import load_task

    key = new_version(args.task)
    recipe = args.recipe or load_task(data_root() / "tasks" / args.task).recipe
    print(f"dataset version {key}: materialising every stage with recipe '{recipe}'", flush=True)
    code = run_version(key, run_config(args.recipe, args.config))
    # The demo's job is to show the whole loop: a gate that keeps the model from release is a result, not an error.
    return 0 if code == 3 else code


def cmd_version_new(args) -> int:
    print(new_version(args.task))
    return 0


def cmd_run(args) -> int:
    parse_version_key(args.version)
    return run_version(args.version, run_config(args.recipe, args.config))


def cmd_eval(args) -> int:
    from factory.pipeline import EVALUATION

    parse_version_key(args.version)
    if not (data_root() / "versions" / args.version / "gguf_model" / "summary.json").exists():
        raise DataError(data_root() / "versions" / args.version, "no exported model to score: run `factory run` first")
    return run_version(args.version, run_config(None, args.config), assets=EVALUATION)


def cmd_classify(args) -> int:
    from tqdm import tqdm

    from factory.runtime.champion import load_classifier, read_inputs
    from factory.runtime.classifier import PromptTooLong

    classifier, version = load_classifier(data_root(), args.task, args.version)
    texts = read_inputs(args.input, args.text_field)
    too_long = []
    with open(args.output, "w", encoding="utf-8") if args.output else contextlib.nullcontext(sys.stdout) as out:
        for row_id, text in tqdm(texts, desc=f"{args.task} {version}", unit="row", disable=len(texts) < 2, file=sys.stderr):
            try:
                result = classifier.classify(text)
            except PromptTooLong as exc:  # one row the model cannot read must not cost the rows after it
                too_long.append(row_id)
                out.write(json.dumps({"id": row_id, "error": str(exc), "model_version": version}) + "\n")
                continue
            out.write(json.dumps({"id": row_id, "label": result.label, "confidence": round(result.confidence, 4),
                                  "abstained": result.abstained, "model_version": version}) + "\n")
    if too_long:
        print(f"{args.input}: {len(too_long)} of {len(texts)} rows not classified, their prompts over the model's "
              f"context (ids {', '.join(too_long[:5])}{', ...' if len(too_long) > 5 else ''}): lower max_input_chars "
              "in task.yaml", file=sys.stderr)
        return 1
    return 0


def cmd_serve(args) -> int:
    from factory.serve.app import ServeSettings, serve

    threads = args.threads or usable_cores()
    settings = ServeSettings(task=args.task, data_root=data_root(), version=args.version, host=args.host,
                             api_key=os.environ.get("FACTORY_API_KEY", ""), reload_seconds=args.reload_seconds,
                             threads=threads, workers=args.workers)
    print(f"serving {args.task} on http://{args.host}:{args.port}, llama.cpp threads: {threads} in "
          f"{args.workers} worker{'s' if args.workers > 1 else ''} "
          "(POST /v1/classify, /v1/chat/completions, /v1/feedback; GET /healthz, /metrics)", flush=True)
    serve(settings, args.port)
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
    rejected = (folder / "import_rejected.jsonl").read_text(encoding="utf-8").count("\n")
    print(f"task written to {folder}" + (f"; {rejected} rows rejected, each with its line and reason, in "
                                         f"{folder / 'import_rejected.jsonl'}" if rejected else "")
          + f"; next: factory version new --task {args.name}")
    return 0


def positive_int(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of at least 1")
    return int(value)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="factory", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="new version of a task, every stage, then the comparison table")
    demo.add_argument("--task", default="support_email")
    demo.add_argument("--recipe", help="recipe under factory/recipes/ or a YAML path (default: the task's `recipe`)")
    demo.add_argument("--config", help="YAML run config: per-asset settings, e.g. ops: {eval_report: {config: {hf_limit: 0}}}")
    demo.set_defaults(func=cmd_demo)

    run = sub.add_parser("run", help="materialise every stage for an existing dataset version; exit 3 when a gate fails")
    run.add_argument("version", help="e.g. support_email.v2")
    run.add_argument("--recipe", help="recipe under factory/recipes/ or a YAML path (default: the version's own, "
                                      "else its predecessor's, else the task's `recipe`)")
    run.add_argument("--config", help="YAML run config: per-asset settings, e.g. ops: {eval_report: {config: {hf_limit: 0}}}")
    run.set_defaults(func=cmd_run)

    evaluate = sub.add_parser("eval", help="re-score an existing version: baselines, eval report, release gates")
    evaluate.add_argument("version", help="e.g. support_email.v2")
    evaluate.add_argument("--config", help="YAML run config for baseline_report and eval_report")
    evaluate.set_defaults(func=cmd_eval)

    classify = sub.add_parser("classify", help="label one text, or a CSV/JSONL file, with a task's champion")
    classify.add_argument("input", help="a .csv/.jsonl file, or the text itself")
    classify.add_argument("--task", required=True)
    classify.add_argument("--version", help="a released dataset version (default: the champion)")
    classify.add_argument("--text-field", default="text", help="the column or key holding the text, for files")
    classify.add_argument("--output", help="write JSON lines here instead of stdout")
    classify.set_defaults(func=cmd_classify)

    srv = sub.add_parser("serve", help="serve a task's champion over HTTP, logging every request with PII scrubbed")
    srv.add_argument("--task", required=True)
    srv.add_argument("--version", help="pin a released dataset version (default: follow the champion alias)")
    srv.add_argument("--host", default="127.0.0.1", help="anything but loopback needs FACTORY_API_KEY set")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--reload-seconds", type=float, default=30.0, help="how often to look for a new champion")
    srv.add_argument("--threads", type=int, default=0, help="llama.cpp threads (default: every core this process may use)")
    srv.add_argument("--workers", type=positive_int, default=1,
                     help="copies of the model answering concurrent requests side by side, the threads shared out "
                          "(more requests/s under load, each request slower)")
    srv.set_defaults(func=cmd_serve)

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
