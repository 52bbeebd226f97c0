"""Question 1: model quality on real labelled data, side by side with what a user would do instead.

    .venv/bin/python bench/quality.py --data ../shared/data/banking77 --train-per-label 10

Imports the data as a newcomer would (train file + original test file), optionally keeps only
N training rows per label, then scores on the same test rows: TF-IDF + linear SVM, TF-IDF +
logistic regression, MiniLM embeddings + logistic regression, the base model zero-shot (free and
constrained to the labels) and few-shot, and, unless --skip-finetune, the factory graph's fine-tune
before export and its exported GGUF files.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import write_result  # noqa: E402

from factory.lib.examples import load_examples  # noqa: E402
from factory.lib.files import peak_rss_mib, read_jsonl, sample_rows, write_jsonl  # noqa: E402
from factory.lib.gates import GateConfig  # noqa: E402
from factory.lib.importer import ImportOptions, import_task, label_words  # noqa: E402
from factory.lib.task import load_task  # noqa: E402


def subsample(task_dir: Path, out_dir: Path, per_label: int | None, rows: int | None, seed: int) -> Path:
    """A copy of the task whose seeds keep per_label rows of each label (or `rows` in all, stratified)."""
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
    return out_dir


def timed_predictions(predict_one, texts: list[str]) -> tuple[list, list[float]]:
    predictions, latencies = [], []
    for text in texts:
        started = time.perf_counter()
        predictions.append(predict_one(text))
        latencies.append((time.perf_counter() - started) * 1000)
    return predictions, latencies


def latency_fields(latencies: list[float]) -> dict:
    ordered = sorted(latencies)
    return {"latency_p50_ms": statistics.median(ordered), "latency_p95_ms": ordered[max(0, round(0.95 * len(ordered)) - 1)]}


def classical_baselines(train: list[dict], test: list[dict], contract, latency_rows: int) -> tuple[dict, dict, list[float]]:
    """Scores by model, each model's label for every test row by row id, and each test row's cosine to its nearest
    training row (from the MiniLM embeddings the last baseline computes anyway)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, make_pipeline
    from sklearn.svm import LinearSVC

    from factory.integrations.resources import Embedder
    from factory.lib.baselines import tfidf_logreg

    texts, targets = [r["text"] for r in train], [r["target"] for r in train]
    gold = [r["target"] for r in test]
    results, by_row = {}, {}

    def features():
        return FeatureUnion([("word", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)),
                             ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True))])

    embedder = Embedder()
    models = {
        "tfidf_linear_svm": lambda: make_pipeline(features(), LinearSVC(C=1.0)).fit(texts, targets),
        "tfidf_logreg": lambda: tfidf_logreg(texts, targets),
    }
    for name, fit in models.items():
        started = time.perf_counter()
        model = fit()
        fit_seconds = time.perf_counter() - started
        predicted = list(model.predict([r["text"] for r in test]))
        _, latencies = timed_predictions(lambda t, model=model: model.predict([t])[0], [r["text"] for r in sample_rows(test, latency_rows)])
        results[name] = {**contract.metrics(gold, predicted), **latency_fields(latencies), "train_seconds": fit_seconds}
        by_row[name] = {r["id"]: label for r, label in zip(test, predicted)}

    started = time.perf_counter()
    encoder = embedder.load()
    train_emb = embedder.encode(texts, encoder)
    logreg = LogisticRegression(C=10.0, max_iter=3000).fit(train_emb, targets)
    fit_seconds = time.perf_counter() - started
    test_emb = embedder.encode([r["text"] for r in test], encoder)
    predicted = list(logreg.predict(test_emb))
    _, latencies = timed_predictions(
        lambda t: logreg.predict(embedder.encode([t], encoder))[0], [r["text"] for r in sample_rows(test, latency_rows)])
    results["minilm_logreg"] = {**contract.metrics(gold, predicted), **latency_fields(latencies), "train_seconds": fit_seconds}
    by_row["minilm_logreg"] = {r["id"]: label for r, label in zip(test, predicted)}
    return results, by_row, (test_emb @ train_emb.T).max(axis=1).tolist()


def same_rows_baselines(version: Path, test: list[dict], contract, latency_rows: int) -> tuple[dict, dict]:
    """The classical baselines refit on the fine-tune's own training split: the gates drop rows that nearly copy a
    test row and the split holds out validation rows, so the first fit saw more (and closer) data than the fine-tune."""
    train = read_jsonl(version / "dataset_splits" / "train.jsonl")
    scores, by_row, _ = classical_baselines(train, test, contract, latency_rows)
    return ({f"{name}_same_rows": s for name, s in scores.items()}, {f"{name}_same_rows": p for name, p in by_row.items()})


def head_to_head(test: list[dict], finetuned: dict, baseline: dict, near_copies: set[str], top: int = 8) -> dict:
    """The fine-tune against one baseline on the rows both scored: who alone is right how often (with the exact
    McNemar test on those rows), accuracy with and without a near-copy in the seed rows, the labels where the
    fine-tune trails most (per-label F1) and its commonest confusions. Points at what to repair or try next."""
    from scipy.stats import binomtest
    from sklearn.metrics import f1_score

    rows = [(r["target"], finetuned[r["id"]] or "<invalid>", baseline[r["id"]], r["id"] in near_copies)
            for r in test if r["id"] in finetuned]
    gold, tuned, base, _ = (list(column) for column in zip(*rows))
    labels = sorted(set(gold))
    gaps = (f1_score(gold, tuned, labels=labels, average=None, zero_division=0)
            - f1_score(gold, base, labels=labels, average=None, zero_division=0))
    confusions = Counter((g, t) for g, t, _, _ in rows if t != g)
    only_tuned, only_base = sum(g == t != b for g, t, b, _ in rows), sum(g == b != t for g, t, b, _ in rows)

    def accuracy_where(near: bool) -> dict:
        subset = [(g, t, b) for g, t, b, n in rows if n == near]
        return {"rows": len(subset), "finetuned_accuracy": sum(g == t for g, t, _ in subset) / max(len(subset), 1),
                "baseline_accuracy": sum(g == b for g, _, b in subset) / max(len(subset), 1)}

    return {"rows": len(rows), "both_right": sum(g == t == b for g, t, b, _ in rows),
            "only_finetuned_right": only_tuned, "only_baseline_right": only_base,
            "neither_right": sum(g != t and g != b for g, t, b, _ in rows),
            "mcnemar_exact_p": binomtest(only_tuned, only_tuned + only_base).pvalue if only_tuned + only_base else 1.0,
            "with_near_copy_in_seeds": accuracy_where(True), "without_near_copy_in_seeds": accuracy_where(False),
            "labels_behind": [{"label": label, "f1_gap": round(float(gap), 3)} for gap, label in sorted(zip(gaps, labels))[:top]],
            "confusions": [{"target": g, "predicted": t, "rows": n} for (g, t), n in confusions.most_common(top)]}


def base_model_rows(task, train: list[dict], test: list[dict], llm_rows: int, shots: int, seed: int, base_model: str,
                    chat_template: str) -> dict:
    """The base model as shipped (GGUF) with a prompt that lists the labels: free, constrained, few-shot."""
    from factory.integrations.models import source_gguf
    from factory.runtime.classifier import GGUFClassifier

    contract = task.build_contract()
    answers = sorted(contract.render(label) for label in contract.labels)
    prompt = ("Classify the customer message into exactly one of these intents. Answer with the intent name only.\n"
              "Intents: " + ", ".join(answers))
    zero = task.model_copy(update={"system_prompt": prompt})
    rng = random.Random(seed)
    examples = rng.sample(train, min(shots, len(train)))
    few_prompt = prompt + "\n\nExamples:\n" + "\n".join(f"{e['text']!r} -> {contract.render(e['target'])}" for e in examples)
    few = task.model_copy(update={"system_prompt": few_prompt})
    gguf = None if chat_template else source_gguf(base_model)
    if gguf is None:
        raise SystemExit(f"--base-model {base_model!r} is not a GGUF with its own chat template: "
                         "the base-model rows need one (or pass --skip-base)")
    rows = sample_rows(test, llm_rows)
    out = {}
    for name, spec, constrained in (("base_zero_shot_free", zero, False), ("base_zero_shot_constrained", zero, True),
                                    ("base_few_shot_constrained", few, True)):
        classifier = GGUFClassifier(str(gguf), spec, constrained=constrained)
        results = [classifier.classify(r["text"]) for r in rows]
        out[name] = {**contract.metrics([r["target"] for r in rows], [c.label for c in results]),
                     **latency_fields([c.latency_ms for c in results]), "rows": len(rows)}
        print(name, {k: round(v, 3) for k, v in out[name].items()}, flush=True)
    return out


def finetune_rows(data_root: Path, task_name: str, recipe: str, quantizations: list[str], hf_rows: int, llm_rows: int,
                  report_rows: int, variants_per_seed: int, reuse: bool, base_model: str, chat_template: str,
                  validation_fraction: float) -> dict:
    """Run the factory graph for one version of the task and read its eval report."""
    import dagster as dg

    from factory.defs.resources import factory_resources
    from factory.pipeline import materialize_version, recipe_config
    from factory.runtime.classifier import GGUFClassifier

    key = f"{task_name}.v1"
    version = data_root / "versions" / key
    started = time.perf_counter()
    stage_seconds = {}
    if not (reuse and (version / "eval_report" / "report.json").exists()):
        with dg.instance_for_test() as instance:
            instance.add_dynamic_partitions("dataset_version", [key])
            resources = factory_resources(str(data_root), base_model=base_model, chat_template=chat_template)
            result = materialize_version(key, instance, resources, recipe_config(
                recipe, gguf_model={"quantizations": quantizations}, eval_report={"hf_limit": hf_rows, "gguf_limit": report_rows},
                generated_examples={"variants_per_seed": variants_per_seed},
                dataset_splits={"validation_fraction": validation_fraction}), raise_on_error=False)
        if not (version / "eval_report" / "report.json").exists():
            raise SystemExit(f"the graph for {key} stopped before its eval report; see the log above")
        stage_seconds = {e.step_key: e.event_specific_data.duration_ms / 1000 for e in result.all_events if e.is_step_success}
    report = json.loads((version / "eval_report" / "report.json").read_text())
    adapter = json.loads((version / "lora_adapter" / "summary.json").read_text())
    out = {name: sets["test"] for name, sets in report["models"].items() if "test" in sets and name.startswith("finetuned")}
    if reuse:  # score the kept adapter again with this commit's evaluation (sampling, metrics)
        from factory.training.evaluate import EvalConfig
        from factory.training.evaluate import main as evaluate

        gguf_summary = json.loads((version / "gguf_model" / "summary.json").read_text())
        scored = evaluate(EvalConfig(model=gguf_summary["base_model_dir"], adapter_dir=str(version / "lora_adapter" / "adapter"),
                                     task_dir=str(data_root / "tasks" / task_name), limit=hf_rows,
                                     eval_files={"test": str(version / "eval_sets" / "test.jsonl")},
                                     output_dir=str(version / "bench_finetuned_hf")))
        out["finetuned_hf"] = scored["sets"]["test"]
    for name in out:
        out[name]["train_seconds"] = adapter["train_seconds"]
    task = load_task(data_root / "tasks" / task_name)
    test = sample_rows(load_examples(task.path("test"), task.build_contract(), "test"), llm_rows)
    by_row = {}
    for kind in quantizations:
        classifier = GGUFClassifier(str(version / "gguf_model" / f"model-{kind}.gguf"), task)
        results = [classifier.classify(r["text"]) for r in test]
        out[f"finetuned_gguf_{kind}_constrained"] = {
            **task.build_contract().metrics([r["target"] for r in test], [c.label for c in results]),
            **latency_fields([c.latency_ms for c in results]), "rows": len(test), "train_seconds": adapter["train_seconds"]}
        by_row[f"finetuned_gguf_{kind}_constrained"] = {r["id"]: c.label for r, c in zip(test, results)}
    return {"models": out, "predictions": by_row, "stage_seconds": stage_seconds, "graph_seconds": time.perf_counter() - started,
            "adapter": {k: adapter.get(k) for k in ("train_rows", "train_loss", "train_seconds", "tokens_per_second", "epochs",
                                                   "peak_rss_mib")}}


def answer_style(task_dir: Path) -> str:
    answers = load_task(task_dir).build_contract().answers
    if not answers:
        return "labels"
    return "words" if all(answer == label_words(label) for label, answer in answers.items()) else "distinct first words"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder with train.jsonl and test.jsonl ({text, label} lines)")
    parser.add_argument("--work", default="data/bench", help="data root for the imported task and its versions")
    parser.add_argument("--train-per-label", type=int, help="keep this many training rows per label")
    parser.add_argument("--train-rows", type=int, help="keep about this many training rows, stratified")
    parser.add_argument("--recipe", default="default")
    parser.add_argument("--base-model", default=os.environ.get("FACTORY_BASE_MODEL", "smollm2-135m"),
                        help="packaged name, .gguf file, local Hugging Face folder or hub id (as FACTORY_BASE_MODEL)")
    parser.add_argument("--chat-template", default=os.environ.get("FACTORY_CHAT_TEMPLATE", ""),
                        help="for a base model without a chat template: a name from factory/templates/ or a .jinja file")
    parser.add_argument("--quantizations", default="q8_0,q4_k_m")
    parser.add_argument("--variants-per-seed", type=int, default=0,
                        help="production-format variants per row; 0 by default: the augmenter makes emails, not chat messages")
    parser.add_argument("--llm-rows", type=int, default=400, help="test rows scored by language models with llama.cpp")
    parser.add_argument("--hf-rows", type=int, default=200, help="test rows scored with transformers before export")
    parser.add_argument("--report-rows", type=int, default=0,
                        help="rows of each eval set the graph's eval_report scores with free generation (0: all)")
    parser.add_argument("--shots", type=int, default=10)
    parser.add_argument("--latency-rows", type=int, default=200)
    parser.add_argument("--validation-fraction", type=float, default=0.1,
                        help="share of accepted rows held out for validation loss; 0 trains on all of them")
    parser.add_argument("--answer-words", action="store_true",
                        help="import the task with the model answering labels in words (card_arrival -> card arrival)")
    parser.add_argument("--distinct-first-words", action="store_true",
                        help="import with answers in words that each start with their own word (implies --answer-words)")
    parser.add_argument("--skip-finetune", action="store_true")
    parser.add_argument("--reuse", action="store_true", help="keep an already trained version; only score it again")
    parser.add_argument("--skip-base", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default=None, help="result file name (default from the regime)")
    parser.add_argument("--out", default=None, help="results folder (default bench/results)")
    args = parser.parse_args(argv)
    args.answer_words = args.answer_words or args.distinct_first_words
    style = "distinct first words" if args.distinct_first_words else "words" if args.answer_words else "labels"

    data, work = Path(args.data), Path(args.work).resolve()
    tasks = work / "tasks"
    full = tasks / "bench_full"
    if not full.exists():
        import_task(data / "train.jsonl", "bench_full", tasks,
                    ImportOptions(dev_per_label=2, golden_per_label=2, seed=args.seed, answer_words=args.answer_words,
                                  distinct_first_words=args.distinct_first_words),
                    test_source=data / "test.jsonl")
    elif (imported := answer_style(full)) != style:
        raise SystemExit(f"{full} was imported with answers as {imported}, not {style}; use another --work folder")
    regime = f"pl{args.train_per_label}" if args.train_per_label else (f"r{args.train_rows}" if args.train_rows else "all")
    task_dir = subsample(full, tasks / f"bench_{regime}", args.train_per_label, args.train_rows, args.seed) \
        if regime != "all" else full
    if not args.reuse:
        shutil.rmtree(work / "versions" / f"{task_dir.name}.v1", ignore_errors=True)
    task = load_task(task_dir)
    contract = task.build_contract()
    train = load_examples(task.path("seeds"), contract, "seed")
    test = load_examples(task.path("test"), contract, "test")
    print(f"{task_dir.name}: {len(train)} training rows, {len(test)} test rows, {len(contract.labels)} labels", flush=True)

    models, all_rows_by_row, nearest_seed_cosine = classical_baselines(train, test, contract, args.latency_rows)
    for name, scores in models.items():
        print(name, {k: round(v, 3) for k, v in scores.items()}, flush=True)
    if not args.skip_base:
        models.update(base_model_rows(task, train, test, args.llm_rows, args.shots, args.seed, args.base_model,
                                      args.chat_template))
    payload = {"task": task_dir.name, "train_rows": len(train), "test_rows": len(test), "labels": len(contract.labels),
               "llm_rows": args.llm_rows, "hf_rows": args.hf_rows, "report_rows": args.report_rows, "recipe": args.recipe,
               "base_model": args.base_model, "chat_template": args.chat_template,
               "variants_per_seed": args.variants_per_seed, "validation_fraction": args.validation_fraction,
               "answer_words": args.answer_words,
               "distinct_first_words": args.distinct_first_words, "seed": args.seed, "models": models}
    if not args.skip_finetune:
        tuned = finetune_rows(work, task_dir.name, args.recipe, args.quantizations.split(","), args.hf_rows, args.llm_rows,
                              args.report_rows, args.variants_per_seed, args.reuse, args.base_model, args.chat_template,
                              args.validation_fraction)
        models.update(tuned.pop("models"))
        tuned_by_row = tuned.pop("predictions")
        previous = Path(args.out or "bench/results") / f"{args.name or 'quality_' + regime}.json"
        if not tuned["stage_seconds"] and previous.exists():  # --reuse: the training run's timings stand
            old = json.loads(previous.read_text())
            tuned.update(stage_seconds=old.get("stage_seconds"), graph_seconds=old.get("graph_seconds"),
                         trained_at_commit=old.get("trained_at_commit", old.get("commit")))
        payload.update(tuned)
        same_rows, baselines_by_row = same_rows_baselines(work / "versions" / f"{task_dir.name}.v1", test, contract,
                                                          args.latency_rows)
        models.update(same_rows)
        first_gguf = next(iter(tuned_by_row))
        # Test rows with a seed row the leakage gate keeps from the fine-tune, not from the baselines fit on every seed row.
        near_copies = {r["id"] for r, cosine in zip(test, nearest_seed_cosine) if cosine >= GateConfig().semantic_leakage_threshold}
        # Against the strongest baseline fit on the same rows, and against the strongest fit on every seed row (the goal).
        for key, by_row in (("head_to_head", baselines_by_row), ("head_to_head_all_seed_rows", all_rows_by_row)):
            strongest = max(by_row, key=lambda name: models[name]["accuracy"])
            payload[key] = {"finetuned": first_gguf, "baseline": strongest,
                            **head_to_head(test, tuned_by_row[first_gguf], by_row[strongest], near_copies)}
    payload["peak_rss_mib"] = peak_rss_mib()
    write_result(args.name or f"quality_{regime}", payload, args.out)
    return payload


if __name__ == "__main__":
    main()
