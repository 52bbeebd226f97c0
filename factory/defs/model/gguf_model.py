import dagster as dg
from pydantic import Field

from factory.defs.automation import AFTER_UPSTREAM
from factory.defs.partitions import dataset_versions
from factory.integrations.resources import BaseModel, TrainingScripts
from factory.integrations.storage import FactoryStorage
from factory.integrations.tracking import MlflowTracker
from factory.lib.files import read_jsonl, write_json, write_text
from factory.lib.quantization import choose_quantization
from factory.lib.release import PROMPT_MARKER, SYSTEM_MARKER, modelfile, ollama_template
from factory.lib.report import headline
from factory.runtime.prompt import single_turn_template
from factory.training.evaluate import EvalConfig
from factory.training.export_gguf import ExportConfig, primary_gguf
from factory.training.parity import template_parity


class GGUFConfig(dg.Config):
    quantizations: list[str] = Field(default=["q8_0", "q5_k_m", "q4_k_m"],
                                     description="exported and scored on dev; any of f16, q8_0, q5_k_m, q4_k_m, q4_0")
    tolerance: float = Field(default=0.01, description="the smallest file within this much of the best dev score is served")


@dg.asset(partitions_def=dataset_versions, automation_condition=AFTER_UPSTREAM, deps=["lora_adapter", "eval_sets"], kinds={"gguf", "llama.cpp"})
def gguf_model(
    context: dg.AssetExecutionContext, config: GGUFConfig, storage: FactoryStorage,
    base_model: BaseModel, scripts: TrainingScripts, tracker: MlflowTracker,
) -> dg.MaterializeResult:
    """The fine-tune exported to GGUF for llama.cpp in several quantizations; the one served is chosen on dev and
    gets an Ollama Modelfile from its own template and stop tokens (released with it, or there to try when it is not)."""
    key = context.partition_key
    folder = storage.asset_dir(key, "gguf_model")
    export = ExportConfig(base_model_dir=str(base_model.hf_dir()), adapter_dir=str(storage.asset_dir(key, "lora_adapter") / "adapter"),
                          output_dir=str(folder), quantizations=config.quantizations)
    configs = storage.asset_dir(key, "_configs")
    with tracker.run(context, {"quantizations": ",".join(config.quantizations), "tolerance": config.tolerance}) as run:
        summary = scripts.run(context, "factory.training.export_gguf", export, configs)
        kinds = list(summary["files"])
        scored = scripts.run_each(context, "factory.training.evaluate", [EvalConfig(
            model=str(folder / summary["files"][kind]["file"]), task_dir=str(storage.task_for(key).folder),
            eval_files={"dev": str(storage.asset_dir(key, "eval_sets") / "dev.jsonl")},
            output_dir=str(storage.asset_dir(key, "_quantization_dev") / kind)) for kind in kinds], configs)
        dev_scores = {kind: headline(result["sets"]["dev"]) for kind, result in zip(kinds, scored)}
        choice = choose_quantization(dev_scores, {k: v["bytes"] for k, v in summary["files"].items()}, config.tolerance)
        write_json(folder / "choice.json", choice)
        chosen = folder / summary["files"][choice["chosen"]]["file"]
        rendered, stops = single_turn_template(str(chosen), SYSTEM_MARKER, PROMPT_MARKER)
        write_text(folder / "Modelfile", modelfile(chosen.name, ollama_template(rendered), stops,
                                                   storage.task_for(key).system_prompt))
        for kind, info in summary["files"].items():
            run.log_metrics({f"{kind}.bytes": info["bytes"], f"{kind}.dev_score": dev_scores[kind]})
            run.log_params({f"{kind}.sha256": info["sha256"]})
        run.log_params({"chosen": choice["chosen"], "choice_reason": choice["reason"]})
    main = summary["files"][choice["chosen"]]
    return dg.MaterializeResult(metadata={
        **run.metadata(),
        "path": dg.MetadataValue.path(str(folder / main["file"])),
        "sha256": main["sha256"],
        "bytes": main["bytes"],
        "files": dg.MetadataValue.json(summary["files"]),
        "quantization": choice["chosen"],
        "quantization_choice": choice["reason"],
    })


@dg.asset_check(asset=gguf_model, blocking=True)
def gguf_prompt_parity(context: dg.AssetCheckExecutionContext, storage: FactoryStorage) -> dg.AssetCheckResult:
    """The GGUF's own chat template and EOS give the same prompt ids the adapter was trained on."""
    key = context.partition_key
    task = storage.task_for(key)
    folder = storage.asset_dir(key, "gguf_model")
    _, _, gguf = primary_gguf(folder)
    rows = read_jsonl(storage.asset_dir(key, "eval_sets") / "dev.jsonl")[:8]
    problems = template_parity(str(gguf), str(storage.asset_dir(key, "lora_adapter") / "adapter"),
                               [task.messages(r["text"]) for r in rows])
    return dg.AssetCheckResult(passed=not problems, metadata={"problems": dg.MetadataValue.json(problems), "gguf": str(gguf)})
