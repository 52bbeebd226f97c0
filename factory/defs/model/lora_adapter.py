import dagster as dg
import yaml

from factory.defs.automation import AFTER_UPSTREAM
from factory.defs.partitions import dataset_versions
from factory.integrations.resources import BaseModel, Embedder, TrainingScripts
from factory.integrations.storage import FactoryStorage
from factory.integrations.tracking import MlflowTracker
from factory.lib.files import read_jsonl, write_jsonl
from factory.lib.pseudo_labels import out_of_fold_probabilities
from factory.lib.recipes import training_code_version
from factory.training.sft import SFTRunConfig


@dg.asset(partitions_def=dataset_versions, automation_condition=AFTER_UPSTREAM, deps=["dataset_splits", "eval_sets", "training_recipe"],
          code_version=training_code_version(), kinds={"pytorch", "peft"}, pool="train")
def lora_adapter(
    context: dg.AssetExecutionContext, storage: FactoryStorage,
    base_model: BaseModel, scripts: TrainingScripts, tracker: MlflowTracker, embedder: Embedder,
) -> dg.MaterializeResult:
    """LoRA adapter (or every weight, with recipe `method: full`) trained with TRL SFT on the train split, loss on the
    answer and its end-of-turn token only; the checkpoint with the best dev macro-F1 (label-constrained) is kept. With
    the recipe's `distill_weight`, also taught MiniLM + LR's out-of-fold label probabilities for each train row."""
    key = context.partition_key
    splits = storage.asset_dir(key, "dataset_splits")
    folder = storage.asset_dir(key, "lora_adapter")
    snapshot = storage.asset_dir(key, "training_recipe")
    recipe = yaml.safe_load((snapshot / "recipe.yaml").read_text(encoding="utf-8"))
    name = yaml.safe_load((snapshot / "source.json").read_text(encoding="utf-8"))["recipe"]
    task = storage.task_for(key)
    if recipe.get("distill_weight"):
        recipe["soft_targets_file"] = str(_soft_targets(splits / "train.jsonl", list(task.contract.labels), embedder,
                                                        storage.asset_dir(key, "_configs") / "soft_targets.jsonl"))
    run_config = SFTRunConfig(
        base_model_dir=str(base_model.hf_dir()), task_dir=str(task.folder),
        train_file=str(splits / "train.jsonl"), validation_file=str(splits / "validation.jsonl"),
        dev_file=str(storage.asset_dir(key, "eval_sets") / "dev.jsonl"),
        output_dir=str(folder), **recipe,
    )
    with tracker.run(context, {"recipe": name, "base_model": base_model.spec, **recipe}) as run:
        summary = scripts.run(context, "factory.training.sft", run_config, storage.asset_dir(key, "_configs"))
        run.log_metrics(summary)
        run.log_artifacts(folder / "adapter", "adapter")
        run.log_artifacts(folder / "summary.json")
    return dg.MaterializeResult(metadata={
        **run.metadata(),
        "path": dg.MetadataValue.path(str(folder / "adapter")),
        "train_loss": summary["train_loss"],
        "train_seconds": summary["train_seconds"],
        "tokens_per_second": summary["tokens_per_second"],
        "train_rows": summary["train_rows"],
        "method": summary["method"],
        "quantization": summary["quantization"],
        "best_dev_macro_f1": summary["best_dev_macro_f1"],
        "best_step": summary["best_step"],
        "resumed_from_step": summary["resumed_from_step"],
    })


def _soft_targets(train_file, labels: list[str], embedder: Embedder, path):
    rows = read_jsonl(train_file)
    probabilities = out_of_fold_probabilities(embedder.encode([r["text"] for r in rows]), [r["target"] for r in rows], labels)
    return write_jsonl(path, [{"id": r["id"], "probabilities": dict(zip(labels, map(float, p)))}
                              for r, p in zip(rows, probabilities)])
