import json
from pathlib import Path

import dagster as dg
from pydantic import Field

from factory.defs.automation import AFTER_UPSTREAM
from factory.defs.partitions import dataset_versions
from factory.integrations.resources import BaseModel, Embedder, TrainingScripts
from factory.integrations.storage import FactoryStorage
from factory.integrations.tracking import MlflowTracker
from factory.lib.analysis import confusable_pairs, failure_clusters
from factory.lib.files import read_jsonl, write_json
from factory.lib.report import (
    CANDIDATE,
    INTERNAL,
    add_costs,
    build_report,
    comparison_rows,
    confusion_png,
    failed_gates,
    headline,
    html_report,
    report_markdown,
)
from factory.runtime.champion import champion_model_path
from factory.training.evaluate import EvalConfig
from factory.training.export_gguf import primary_gguf


class EvalReportConfig(dg.Config):
    hf_limit: int = Field(default=200, description="test rows scored with transformers before export, drawn with a seed "
                                                   "(0: all); it is ~3x slower than the GGUF")
    gguf_limit: int = Field(default=0, description="rows of each eval set scored through the served path (0: all)")
    free_limit: int = Field(default=300, description="test rows the free-generation diagnostic answers, drawn with a seed "
                                                     "(0: all): it catches a broken template, it does not rank models")
    price_per_cpu_hour: float = Field(default=0.05, description="USD a CPU core costs an hour: the cost model of local models")


@dg.asset(partitions_def=dataset_versions, automation_condition=AFTER_UPSTREAM, deps=["gguf_model", "lora_adapter", "baseline_report", "eval_sets"],
          kinds={"llama.cpp", "pytorch"})
def eval_report(
    context: dg.AssetExecutionContext, config: EvalReportConfig, storage: FactoryStorage,
    base_model: BaseModel, scripts: TrainingScripts, tracker: MlflowTracker, embedder: Embedder,
) -> dg.MaterializeResult:
    """The served path (the GGUF, labels constrained, with confidences) on every eval set beside every baseline, free
    generation, the fine-tune before export and the previous release; release gates; repair targets; HTML report."""
    key = context.partition_key
    task = storage.task_for(key)
    folder = storage.asset_dir(key, "eval_report")
    eval_dir = storage.asset_dir(key, "eval_sets")
    kind, info, gguf = primary_gguf(storage.asset_dir(key, "gguf_model"))
    files = {p.stem: str(p) for p in sorted(eval_dir.glob("*.jsonl")) if read_jsonl(p)}
    served = f"finetuned_gguf_{kind}"

    def eval_config(name: str, model: str, sets: dict, **options) -> EvalConfig:
        return EvalConfig(model=model, task_dir=str(task.folder), eval_files=sets, output_dir=str(folder / name), **options)

    models = json.loads((storage.asset_dir(key, "baseline_report") / "report.json").read_text())
    baselines, skipped = models["models"], models["skipped"]
    champion = tracker.champion(task.name)
    configs = storage.asset_dir(key, "_configs")
    previous = None
    if champion and champion.get("dagster.partition") != key and Path(champion_path := champion_model_path(champion)).exists():
        previous = scripts.run(context, "factory.training.evaluate", eval_config(
            "previous_release", champion_path, {"test": files["test"]}), configs)["sets"]["test"]
        baselines["previous_release"] = {"test": previous}
    encoder = storage.asset_dir(key, "baseline_report") / "minilm_logreg" / "model"
    if task.encoder_candidate and encoder.exists():  # through the runtime it would be served by, on every eval set
        baselines[CANDIDATE] = scripts.run(context, "factory.training.evaluate", eval_config(
            CANDIDATE, str(encoder), files), configs)["sets"]
    # One process for the served GGUF's two passes, served first: a process's peak memory is what the report shows.
    served_sets, free_sets = (r["sets"] for r in scripts.run_each(context, "factory.training.evaluate", [
        eval_config(served, str(gguf), files, limit=config.gguf_limit),
        eval_config(f"{served}_free", str(gguf), {"test": files["test"]}, decoding="free", limit=config.free_limit)], configs))
    hf = scripts.run(context, "factory.training.evaluate", eval_config(
        "finetuned_hf", str(base_model.hf_dir()), {"test": files["test"]}, decoding="free",
        adapter_dir=str(storage.asset_dir(key, "lora_adapter") / "adapter"), limit=config.hf_limit), configs)["sets"]
    models = {**baselines, "finetuned_hf": hf, f"{served}_free": free_sets, served: served_sets}
    add_costs(models, config.price_per_cpu_hour)
    test_predictions = {name: read_jsonl(p) for name in models if (p := _predictions(storage, key, name)).exists()}
    golden = {r["id"] for r in read_jsonl(eval_dir / "golden.jsonl") if r.get("critical")} if "golden" in files else set()
    critical = {name: sum(p["id"] in golden and p["prediction"] != p["target"] for p in _served_rows(folder, name, "golden"))
                for name in (served, CANDIDATE)}
    quantization = json.loads((storage.asset_dir(key, "gguf_model") / "choice.json").read_text())
    report = build_report(key, task, models, served, test_predictions, critical[served], previous, skipped, quantization,
                          critical[CANDIDATE])
    report["repair_targets"] = _repair_targets(folder, served, files, embedder, models[served].get("dev", {}))
    _write(folder, report, task)
    gates = report["release_gates"]
    with tracker.run(context, {"gguf_sha256": info["sha256"], "quantization": kind}) as run:
        for name, sets in models.items():
            for set_name, scores in sets.items():
                run.log_metrics(scores, prefix=f"{name}.{set_name}.")
        for artifact in ("report.md", "report.json", "report.html", "repair_targets.json", "confusion-test.png"):
            run.log_artifacts(folder / artifact)
    return dg.MaterializeResult(metadata={
        **run.metadata(),
        "test_table": dg.MetadataValue.md(report_markdown(report)),
        "served_test_macro_f1": headline(models[served]["test"]),
        "best_baseline": report["best_baseline"] or "none",
        "release_gates_passed": not failed_gates(gates),
        "release_gates": dg.MetadataValue.json(gates),
        "released_candidate": report["release"]["model"] or "none",
        "path": dg.MetadataValue.path(str(folder / "report.html")),
    })


@dg.asset_check(asset=eval_report, blocking=True)
def release_gates_pass(context: dg.AssetCheckExecutionContext, storage: FactoryStorage) -> dg.AssetCheckResult:
    """Every release gate of the task holds for the fine-tune (or, with `encoder_candidate`, for the encoder in its
    place); a failure blocks `released_model`."""
    report = json.loads((storage.asset_dir(context.partition_key, "eval_report") / "report.json").read_text())
    release = report["release"]
    return dg.AssetCheckResult(passed=release["model"] is not None, metadata={
        "failed": dg.MetadataValue.json(failed_gates(report["release_gates"])),
        "gates": dg.MetadataValue.json(report["release_gates"]),
        "released_candidate": release["model"] or "none", "reason": release["reason"]})


def _predictions(storage: FactoryStorage, key: str, name: str) -> Path:
    folder = storage.asset_dir(key, "eval_report" if name.startswith(INTERNAL) else "baseline_report")
    return folder / name / "predictions-test.jsonl"


def _served_rows(folder: Path, served: str, set_name: str) -> list[dict]:
    path = folder / served / f"predictions-{set_name}.jsonl"
    return read_jsonl(path) if path.exists() else []


def _repair_targets(folder: Path, served: str, files: dict, embedder: Embedder, dev: dict) -> dict:
    """Failing dev and test rows clustered by meaning, and label pairs the served model confuses on dev."""
    texts = {r["id"]: r["text"] for name in ("dev", "test") if name in files for r in read_jsonl(files[name])}
    failures = [{**p, "text": texts[p["id"]]} for name in ("dev", "test") for p in _served_rows(folder, served, name)
                if p["prediction"] != p["target"]]
    embeddings = embedder.encode([f["text"] for f in failures])
    return {"clusters": failure_clusters(failures, embeddings) if failures else [],
            "confusable_pairs": confusable_pairs(dev["confusion"]) if "confusion" in dev else []}


def _write(folder: Path, report: dict, task) -> None:
    served = report["models"][report["served_model"]]
    write_json(folder / "repair_targets.json", {"partition": report["partition"], **report["repair_targets"]})
    write_json(folder / "report.json", report)
    markdown = report_markdown(report)
    (folder / "report.md").write_text(markdown, encoding="utf-8")
    images = {}
    if "confusion" in served["test"]:
        images["Confusion matrix (served model, test)"] = confusion_png(served["test"]["confusion"], "test")
        (folder / "confusion-test.png").write_bytes(images["Confusion matrix (served model, test)"])
    tables = {"Test set, same rows for every model": comparison_rows(report["models"], order=report["model_order"]),
              "Served model, every eval set": [{"model": n, **s} for n, s in served.items()]}
    notes = [("Task", task.description or task.name)]
    if report["head_to_head"]:
        h = report["head_to_head"]
        notes.append(("Best baseline", f"{h['baseline']}: only the fine-tune right on {h['only_first_right']} rows, only "
                                       f"the baseline on {h['only_second_right']}, McNemar p = {h['p_value']:.3g}"))
    notes.append(("Quantization", report["quantization"]["reason"]))
    notes.append(("Released", f"{report['release']['model'] or 'nothing'}: {report['release']['reason']}"))
    if report["skipped"]:
        notes.append(("Skipped", "; ".join(f"{k}: {v}" for k, v in report["skipped"].items())))
    page = html_report(f"Eval report {report['partition']}", notes, tables, report["release_gates"],
                       served["test"].get("per_label", {}), images)
    (folder / "report.html").write_text(page, encoding="utf-8")
