import json
import os
import shutil

import dagster as dg

from factory.defs.automation import AFTER_UPSTREAM
from factory.defs.partitions import dataset_versions
from factory.integrations.resources import BaseModel
from factory.integrations.storage import FactoryStorage
from factory.integrations.tracking import MlflowTracker
from factory.lib.files import atomic_dir, write_json
from factory.lib.release import model_card
from factory.lib.report import comparison_rows, failed_gates, gates_markdown, markdown_table
from factory.lib.versions import parse_version_key
from factory.training.export_gguf import primary_gguf


@dg.asset(partitions_def=dataset_versions, automation_condition=AFTER_UPSTREAM, deps=["eval_report", "gguf_model", "lora_adapter", "accepted_examples", "training_recipe"],
          kinds={"mlflow", "gguf"})
def released_model(context: dg.AssetExecutionContext, storage: FactoryStorage, tracker: MlflowTracker,
                   base_model: BaseModel) -> dg.MaterializeResult:
    """The model that passed every release gate released: a new MLflow registered-model version under the alias
    `champion` (earlier versions stay registered) and a model card; for the fine-tune, an Ollama Modelfile beside its
    GGUF. With `encoder_candidate`, the MiniLM + LR classifier when it passed in the fine-tune's place."""
    key = context.partition_key
    task = storage.task_for(key)
    report = json.loads((storage.asset_dir(key, "eval_report") / "report.json").read_text())
    release = report["release"]
    if release["model"] is None:  # the blocking check stops this too; never release past a gate
        raise dg.Failure(f"{key}: release gates failed: {', '.join(failed_gates(report['release_gates']))}")
    kind, info, gguf = primary_gguf(storage.asset_dir(key, "gguf_model"))
    folder = storage.asset_dir(key, "released_model")
    recipe = json.loads((storage.asset_dir(key, "training_recipe") / "source.json").read_text())["recipe"]
    training = {**json.loads((storage.asset_dir(key, "lora_adapter") / "summary.json").read_text()),
                "base_model": base_model.spec, "recipe": recipe}
    data = json.loads((storage.asset_dir(key, "accepted_examples") / "summary.json").read_text())
    table = markdown_table(comparison_rows(report["models"], order=report["model_order"]))
    encoder = release["kind"] == "encoder"
    gates = report["candidate_gates"] if encoder else report["release_gates"]
    card = model_card(task=task, partition=key, version=parse_version_key(key)[1],
                      served_test=report["models"][release["model"]]["test"], table_md=table, gates_md=gates_markdown(gates),
                      training=training, data=data, gguf={**info, "quantization": kind}, best_baseline=report["best_baseline"],
                      encoder_reason=release["reason"] if encoder else None)
    exported = storage.asset_dir(key, "gguf_model") / "Modelfile"
    if not encoder and not exported.exists():
        raise dg.Failure(f"{exported} is missing (exported by an older factory): materialise gguf_model again")
    with atomic_dir(folder) as scratch:
        if encoder:
            model = scratch / "encoder"
            shutil.copytree(storage.asset_dir(key, "baseline_report") / "minilm_logreg" / "model", model)
        else:
            model = scratch / gguf.name
            _link_or_copy(gguf, model)
            shutil.copy2(exported, scratch / "Modelfile")
        (scratch / "MODEL_CARD.md").write_text(card, encoding="utf-8")
    model = folder / model.name
    tags = {"dagster.partition": key, "model_path": str(model), "kind": release["kind"]}
    tags |= {} if encoder else {"gguf_path": str(model), "sha256": info["sha256"], "quantization": kind}
    with tracker.run(context, {"kind": release["kind"], **({} if encoder else {"quantization": kind, "gguf_sha256": info["sha256"]})}) as run:
        version = run.register(tracker.registered_name(task.name), model, tags=tags, kind=release["kind"])
        for artifact in ("Modelfile", "MODEL_CARD.md"):
            if (folder / artifact).exists():
                run.log_artifacts(folder / artifact)
    record = {"registered_model": tracker.registered_name(task.name), "version": version, "alias": "champion",
              "partition": key, "kind": release["kind"], "model": model.name, "reason": release["reason"]}
    write_json(folder / "release.json", record | ({} if encoder else {"gguf": gguf.name, "sha256": info["sha256"]}))
    return dg.MaterializeResult(metadata={
        **run.metadata(),
        "registered_model": tracker.registered_name(task.name),
        "registered_version": version,
        "kind": release["kind"],
        "path": dg.MetadataValue.path(str(folder)),
        "model_card": dg.MetadataValue.md((folder / "MODEL_CARD.md").read_text(encoding="utf-8")),
    })


def _link_or_copy(source, target) -> None:
    try:
        os.link(source, target)  # same file system: no second copy of the weights
    except OSError:
        shutil.copy2(source, target)
