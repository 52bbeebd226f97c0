"""Question 1: model quality on real labelled data, measured through the product's own commands.

    .venv/bin/python bench/quality.py --data ../shared/data/banking77 --train-per-label 10 --recipe full_three_epochs

Imports the data as a newcomer would (`factory task import` with the original test file), optionally keeps only N
training rows per label, then runs `factory version new` and `factory run` on a data root and Dagster home of its
own, and reads the version's eval report: the served model (the GGUF through the label-constrained runtime) beside
every in-product baseline on the same test rows, the best baseline and the McNemar test against it.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import factory, stage_seconds, write_result  # noqa: E402

from factory.lib.examples import load_examples  # noqa: E402
from factory.lib.files import write_jsonl  # noqa: E402
from factory.lib.gates import GateConfig  # noqa: E402
from factory.lib.importer import label_words  # noqa: E402
from factory.lib.task import load_task  # noqa: E402
from factory.lib.versions import parse_version_key  # noqa: E402


def subsample(task_dir: Path, out_dir: Path, per_label: int | None, rows: int | None, seed: int, unlabeled: bool = False) -> Path:
    """A copy of the task whose seeds keep per_label rows of each label (or `rows` in all, stratified); with `unlabeled`,
    the other training rows' texts, without their labels, become the task's unlabeled.jsonl."""
    task = load_task(task_dir)
    seeds = load_examples(task.path("seeds"), task.build_contract(), "seed")
    by_label = defaultdict(list)
    for row in seeds:
        by_label[row["target"]].append(row)
    rng = random.Random(seed)
    share = None if rows is None else rows / len(seeds)
    kept = []
    for label in sorted(by_label):
        group = sorted(by_label[label], key=lambda r: r["id"])
        rng.shuffle(group)
        kept += group[: per_label if per_label else max(1, round(len(group) * share))]
    if out_dir.exists():
        shutil.rmtree(out_dir)
    shutil.copytree(task_dir, out_dir)
    spec = (out_dir / "task.yaml").read_text().replace(f"name: {task.name}", f"name: {out_dir.name}")
    (out_dir / "task.yaml").write_text(spec)
    write_jsonl(out_dir / "seeds.jsonl", [{"id": r["id"], "text": r["text"], "label": r["target"]} for r in kept])
    if unlabeled:
        kept_ids = {r["id"] for r in kept}
        write_jsonl(out_dir / "unlabeled.jsonl", [{"id": r["id"], "text": r["text"]} for r in seeds if r["id"] not in kept_ids])
    return out_dir


def answer_style(task_dir: Path) -> str:
    answers = load_task(task_dir).build_contract().answers
    if not answers:
        return "labels"
    return "words" if all(answer == label_words(label) for label, answer in answers.items()) else "distinct first words"


def make_version(args: argparse.Namespace, work: Path, env: dict) -> tuple[Path, str, str]:
    """Import the data, keep the regime's seed rows, then `factory version new` and `factory run`:
    (task folder, version, regime)."""
    style = "distinct first words" if args.distinct_first_words else "words" if args.answer_words else "labels"
    data = Path(args.data).resolve()
    tasks = work / "tasks"
    full = tasks / "bench_full"
    if not full.exists():
        flags = ["--distinct-first-words"] if args.distinct_first_words else ["--answer-words"] if args.answer_words else []
        factory("task", "import", str(data / "train.jsonl"), "--name", "bench_full", "--test-file", str(data / "test.jsonl"),
                "--dev-per-label", "2", "--golden-per-label", "2", "--seed", str(args.seed), *flags, env=env)
    elif (imported := answer_style(full)) != style:
        raise SystemExit(f"{full} was imported with answers as {imported}, not {style}; use another --work folder")
    regime = f"pl{args.train_per_label}" if args.train_per_label else (f"r{args.train_rows}" if args.train_rows else "all")
    task_dir = subsample(full, tasks / f"bench_{regime}", args.train_per_label, args.train_rows, args.seed,
                         unlabeled=args.pseudo_labels_per_label > 0) \
        if regime != "all" else full
    if args.teacher_rows_per_label:
        with_generation(task_dir, args)
    key = f"{task_dir.name}.v1"
    config = work / f"{task_dir.name}-run.yaml"
    config.write_text(yaml.safe_dump(run_config(args)))
    version = work / "versions" / key
    if args.reuse and (version / "gguf_model" / "summary.json").exists():
        factory("eval", key, "--config", str(config), env=env)
    else:
        shutil.rmtree(version, ignore_errors=True)
        shutil.rmtree(work / "dagster", ignore_errors=True)  # one version a work folder: no partition left from before
        factory("version", "new", "--task", task_dir.name, env=env)
        factory("run", key, "--recipe", args.recipe, "--config", str(config), env=env)
    return task_dir, key, regime


def with_generation(task_dir: Path, args: argparse.Namespace) -> None:
    """The task copy's `generation` plan for the teacher configured by FACTORY_TEACHER_* (README: "A teacher")."""
    if os.environ.get("FACTORY_TEACHER_BACKEND", "none") == "none":
        raise SystemExit("--teacher-rows-per-label needs a teacher: set FACTORY_TEACHER_BACKEND (see README)")
    spec = yaml.safe_load((task_dir / "task.yaml").read_text())
    mix = {kind: float(share) for kind, share in (part.split("=") for part in args.teacher_mix.split(","))}
    spec["generation"] = {**spec.get("generation", {}), "rows_per_label": args.teacher_rows_per_label,
                          "rows_per_request": args.teacher_rows_per_request, "mix": mix,
                          "max_chars": args.teacher_max_chars}
    (task_dir / "task.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


def result_name(args: argparse.Namespace, regime: str) -> str:
    """--name, or one from the regime with its variants and pseudo-labels: runs of one regime never overwrite each other."""
    if args.name:
        return args.name
    extras = (f"_variants{args.variants_per_seed}" if args.variants_per_seed else "") + \
        (f"_pseudo{args.pseudo_labels_per_label}" if args.pseudo_labels_per_label else "") + \
        (f"_teacher{args.teacher_rows_per_label}" + ("_nojudge" if args.no_judge else "") if args.teacher_rows_per_label else "") + \
        ("_noreworded" if args.reworded_threshold > 1 else "")
    return f"quality_{regime}{extras}"


def run_config(args: argparse.Namespace) -> dict:
    return {"ops": {
        "gguf_model": {"config": {"quantizations": args.quantizations.split(",")}},
        "baseline_report": {"config": {"base_model_rows": args.base_rows}},
        "eval_report": {"config": {"hf_limit": args.hf_rows}},
        "generated_examples": {"config": {"variants_per_seed": args.variants_per_seed,
                                          "pseudo_labels_per_label": args.pseudo_labels_per_label,
                                          "use_teacher": args.teacher_rows_per_label > 0}},
        "judged_examples": {"config": {"use_judge": not args.no_judge}},
        "accepted_examples": {"config": {"reworded_copy_threshold": args.reworded_threshold}},
        "dataset_splits": {"config": {"validation_fraction": args.validation_fraction, "seed": args.seed}}}}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="folder with train.jsonl and test.jsonl ({text, label} lines)")
    parser.add_argument("--version", help="read a version already run on the --work data root (any task, any way it was "
                                          "run) instead of importing --data and running one")
    parser.add_argument("--work", default="data/bench", help="data root for the imported task and its versions")
    parser.add_argument("--train-per-label", type=int, help="keep this many training rows per label")
    parser.add_argument("--train-rows", type=int, help="keep about this many training rows, stratified")
    parser.add_argument("--recipe", default="default")
    parser.add_argument("--quantizations", default="q8_0,q5_k_m,q4_k_m", help="exported and chosen between on dev")
    parser.add_argument("--variants-per-seed", type=int, default=0,
                        help="production-format variants per row; 0 by default: the augmenter makes emails, not chat messages")
    parser.add_argument("--pseudo-labels-per-label", type=int, default=0,
                        help="self-training: the training rows left out, without labels, become the task's unlabeled "
                             "texts; MiniLM + LR fit on the kept rows labels this many a label (the most confident)")
    parser.add_argument("--teacher-rows-per-label", type=int, default=0,
                        help="rows a label asked of the teacher set by FACTORY_TEACHER_* (judged, then gated); 0: none")
    parser.add_argument("--teacher-rows-per-request", type=int, default=2)
    parser.add_argument("--teacher-mix", default="canonical=0.5,near_miss=0.5", help="kind=share,... (factory.lib.teacher.KINDS)")
    parser.add_argument("--teacher-max-chars", type=int, default=200, help="longest text asked of the teacher")
    parser.add_argument("--no-judge", action="store_true", help="keep the teacher's rows without the judge (every other gate runs)")
    parser.add_argument("--reworded-threshold", type=float, default=GateConfig.reworded_copy_threshold,
                        help="the gates' reworded-copy cosine (1.01 turns that gate off, as in runs before 2026-12-05)")
    parser.add_argument("--base-rows", type=int, default=400, help="test rows the base model answers (zero- and few-shot)")
    parser.add_argument("--hf-rows", type=int, default=200, help="test rows scored with transformers before export")
    parser.add_argument("--validation-fraction", type=float, default=0.1,
                        help="share of accepted rows held out for validation loss; 0 trains on all of them")
    parser.add_argument("--answer-words", action="store_true",
                        help="import the task with the model answering labels in words (card_arrival -> card arrival)")
    parser.add_argument("--distinct-first-words", action="store_true",
                        help="import with answers in words that each start with their own word (implies --answer-words)")
    parser.add_argument("--reuse", action="store_true", help="keep an already trained version; score it again (`factory eval`)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default=None, help="result file name (default from the regime)")
    parser.add_argument("--out", default=None, help="results folder (default bench/results)")
    args = parser.parse_args(argv)
    args.answer_words = args.answer_words or args.distinct_first_words
    if bool(args.data) == bool(args.version):
        parser.error("give --data (import and run) or --version (read a version already run), not both")
    work = Path(args.work).resolve()
    started = time.perf_counter()
    if args.version:
        key, regime = args.version, args.version
        task_dir = work / "tasks" / parse_version_key(key)[0]
        if not (work / "versions" / key / "eval_report" / "report.json").exists():
            raise SystemExit(f"{work / 'versions' / key}: no eval report; run the version first (`factory run {key}`)")
        recipe = json.loads((work / "versions" / key / "training_recipe" / "source.json").read_text())["recipe"]
        made = {}
    else:
        task_dir, key, regime = make_version(args, work, {"FACTORY_DATA_ROOT": str(work), "DAGSTER_HOME": str(work / "dagster")})
        recipe = args.recipe
        made = {"seed": args.seed, "variants_per_seed": args.variants_per_seed, "pseudo_labels_per_label": args.pseudo_labels_per_label,
                "teacher_rows_per_label": args.teacher_rows_per_label, "judge": not args.no_judge,
                "teacher": os.environ.get("FACTORY_TEACHER_GGUF") or os.environ.get("FACTORY_TEACHER_MODEL"),
                "validation_fraction": args.validation_fraction,
                "run_config": run_config(args), "command_seconds": time.perf_counter() - started}
    style = answer_style(task_dir)
    version = work / "versions" / key
    report = json.loads((version / "eval_report" / "report.json").read_text())
    adapter = json.loads((version / "lora_adapter" / "summary.json").read_text())
    task = load_task(task_dir)
    models = {name: {k: v for k, v in sets["test"].items() if isinstance(v, (int, float))}
              for name, sets in report["models"].items() if "test" in sets}
    for name in models:
        if name.startswith("finetuned"):
            models[name]["train_seconds"] = adapter["train_seconds"]
    payload = {"task": task_dir.name, "train_rows": len(load_examples(task.path("seeds"), task.build_contract(), "seed")),
               "test_rows": models[report["served_model"]]["rows"], "labels": len(task.contract.labels),
               "recipe": recipe, "answer_words": style != "labels", "distinct_first_words": style == "distinct first words",
               **made, "models": models,
               "served_model": report["served_model"], "best_baseline": report["best_baseline"],
               "head_to_head": report["head_to_head"], "quantization": report["quantization"],
               "release_gates": report["release_gates"],
               "stage_seconds": stage_seconds(work / "dagster", key),
               "adapter": {k: adapter.get(k) for k in ("train_rows", "train_loss", "train_seconds", "tokens_per_second",
                                                      "epochs", "steps", "best_step", "best_dev_macro_f1", "peak_rss_mib")}}
    write_result(result_name(args, regime), payload, args.out)
    return payload


if __name__ == "__main__":
    main()
