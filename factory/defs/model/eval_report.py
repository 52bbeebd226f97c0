import json

import dagster as dg
from pydantic import Field

from factory.defs.partitions import dataset_versions
from factory.integrations.resources import BaseModel, TrainingScripts
from factory.integrations.storage import FactoryStorage
from factory.integrations.tracking import MlflowTracker
from factory.lib.files import write_json
from factory.lib.report import comparison_rows, headline, markdown_table, release_gates
from factory.training.evaluate import EvalConfig
from factory.training.export_gguf import primary_gguf


class EvalReportConfig(dg.Config):
    hf_limit: int = Field(default=0, description="rows of test scored with transformers before export (0: all)")
    gguf_limit: int = Field(default=0, description="rows of each eval set scored with the exported GGUF (0: all)")


@dg.asset(partitions_def=dataset_versions, deps=["gguf_model", "lora_adapter", "baseline_report", "eval_sets"],
          kinds={"llama.cpp", "pytorch"})
def eval_report(
    context: dg.AssetExecutionContext, config: EvalReportConfig, storage: FactoryStorage,
    base_model: BaseModel, scripts: TrainingScripts, tracker: MlflowTracker,
) -> dg.MaterializeResult:
    """The exported GGUF scored greedily on every eval set, beside the fine-tune before export and the baselines."""
    key = context.partition_key
    task = storage.task_for(key)
    folder = storage.asset_dir(key, "eval_report")
    eval_dir = storage.asset_dir(key, "eval_sets")
    configs = storage.asset_dir(key, "_configs")
    kind, info, gguf_path = primary_gguf(storage.asset_dir(key, "gguf_model"))
    files = {p.stem: str(p) for p in sorted(eval_dir.glob("*.jsonl"))}
    gguf = scripts.run(context, "factory.training.evaluate", EvalConfig(
        model=str(gguf_path), task_dir=str(task.folder), eval_files=files, limit=config.gguf_limit,
        output_dir=str(folder / "gguf")), configs)
    hf = scripts.run(context, "factory.training.evaluate", EvalConfig(
        model=str(base_model.hf_dir()), adapter_dir=str(storage.asset_dir(key, "lora_adapter") / "adapter"),
        task_dir=str(task.folder), eval_files={"test": files["test"]}, limit=config.hf_limit,
        output_dir=str(folder / "finetuned_hf")), configs)
    baselines = json.loads((storage.asset_dir(key, "baseline_report") / "report.json").read_text())
    models = {"tfidf_logreg": baselines["tfidf_logreg"], "base_model": baselines["base_model"],
              "finetuned_hf": hf["sets"], f"finetuned_gguf_{kind}": gguf["sets"]}
    gates = release_gates(gguf["sets"], task.release_gates)
    order = list(models)
    table = markdown_table(comparison_rows(models, order=order))
    report = {"partition": key, "gguf_sha256": info["sha256"], "models": models, "model_order": order, "release_gates": gates}
    write_json(folder / "report.json", report)
    (folder / "report.md").write_text(f"# Eval report {key}\n\nTest set:\n\n{table}\n\nRelease gates: "
                                      f"{json.dumps(gates, indent=2)}\n", encoding="utf-8")
    with tracker.run(context, {"gguf_sha256": info["sha256"], "quantization": kind}) as run:
        for name, sets in models.items():
            for set_name, scores in sets.items():
                run.log_metrics(scores, prefix=f"{name}.{set_name}.")
        run.log_artifacts(folder / "report.md")
        run.log_artifacts(folder / "report.json")
    return dg.MaterializeResult(metadata={
        **run.metadata(),
        "test_table": dg.MetadataValue.md(table),
        "gguf_test_macro_f1": headline(gguf["sets"]["test"]),
        "release_gates_passed": all(g["passed"] for g in gates.values()),
        "release_gates": dg.MetadataValue.json(gates),
        "path": dg.MetadataValue.path(str(folder / "report.md")),
    })
