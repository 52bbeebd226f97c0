import dagster as dg
from pydantic import Field

from factory.defs.partitions import dataset_versions
from factory.integrations.resources import BaseModel, TrainingScripts
from factory.integrations.storage import FactoryStorage
from factory.integrations.tracking import MlflowTracker
from factory.lib.baselines import tfidf_logreg
from factory.lib.files import read_jsonl, write_json
from factory.training.evaluate import EvalConfig
from factory.training.export_gguf import ExportConfig


class BaselineConfig(dg.Config):
    base_model_rows: int = Field(default=300, description="test rows the base model answers (0: all); it is slow and weak")


@dg.asset(partitions_def=dataset_versions, deps=["dataset_splits", "eval_sets"], kinds={"sklearn", "llama.cpp"})
def baseline_report(
    context: dg.AssetExecutionContext, config: BaselineConfig, storage: FactoryStorage, base_model: BaseModel,
    scripts: TrainingScripts, tracker: MlflowTracker,
) -> dg.MaterializeResult:
    """Scores to beat on the same eval rows: TF-IDF + logistic regression, and the base model zero-shot through llama.cpp."""
    key = context.partition_key
    task = storage.task_for(key)
    contract = task.build_contract()
    folder = storage.asset_dir(key, "baseline_report")
    eval_dir = storage.asset_dir(key, "eval_sets")
    train = read_jsonl(storage.asset_dir(key, "dataset_splits") / "train.jsonl")
    classifier = tfidf_logreg([r["text"] for r in train], [r["target"] for r in train])
    report = {"tfidf_logreg": {}}
    for path in sorted(eval_dir.glob("*.jsonl")):
        rows = read_jsonl(path)
        if rows:
            predicted = [contract.parse_answer(p) for p in classifier.predict([r["text"] for r in rows])]
            report["tfidf_logreg"][path.stem] = contract.metrics([r["target"] for r in rows], predicted)

    gguf = base_model.source_gguf()
    if gguf is None:  # a Hugging Face base: export it once, the same way fine-tunes are exported
        export = scripts.run(context, "factory.training.export_gguf",
                             ExportConfig(base_model_dir=str(base_model.hf_dir()), output_dir=str(folder / "base_gguf")), storage.asset_dir(key, "_configs"))
        gguf = folder / "base_gguf" / export["files"]["q8_0"]["file"]
    scored = scripts.run(context, "factory.training.evaluate", EvalConfig(
        model=str(gguf), task_dir=str(task.folder), eval_files={"test": str(eval_dir / "test.jsonl")},
        limit=config.base_model_rows, output_dir=str(folder / "base_model")), storage.asset_dir(key, "_configs"))
    report["base_model"] = scored["sets"]
    write_json(folder / "report.json", report)
    with tracker.run(context, {"base_model": base_model.spec, "base_gguf": str(gguf)}) as run:
        for name, sets in report.items():
            for set_name, scores in sets.items():
                run.log_metrics(scores, prefix=f"{name}.{set_name}.")
        run.log_artifacts(folder / "report.json")
    test = {name: sets.get("test", {}) for name, sets in report.items()}
    return dg.MaterializeResult(metadata={
        **run.metadata(),
        **{f"{name}_test_macro_f1": s.get("macro_f1", s.get("exact_match", 0.0)) for name, s in test.items()},
        "report": dg.MetadataValue.json(report),
    })
