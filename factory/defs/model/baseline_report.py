import dagster as dg
from pydantic import Field

from factory.defs.automation import AFTER_UPSTREAM
from factory.defs.partitions import dataset_versions
from factory.integrations.llm_client import ChatEndpoint
from factory.integrations.resources import BaseModel, Embedder, TrainingScripts
from factory.integrations.storage import FactoryStorage
from factory.integrations.tracking import MlflowTracker
from factory.lib.baselines import classical_predictors, few_shot_prompts, label_prompt, score_predictor
from factory.lib.files import read_jsonl, write_json, write_jsonl
from factory.runtime.encoder import save_encoder
from factory.training.evaluate import EvalConfig
from factory.training.export_gguf import ExportConfig


class BaselineConfig(dg.Config):
    base_model_rows: int = Field(default=300, description="test rows the base model answers (0: all); it is slow and weak")
    few_shot_examples: int = Field(default=4, description="nearest training rows (by embedding) in the few-shot prompt")
    reference_rows: int = Field(default=200, description="test rows sent to the reference endpoint, when one is configured")
    latency_rows: int = Field(default=50, description="rows answered one at a time to time each classical baseline")


@dg.asset(partitions_def=dataset_versions, automation_condition=AFTER_UPSTREAM, deps=["dataset_splits", "eval_sets"], kinds={"sklearn", "llama.cpp"})
def baseline_report(
    context: dg.AssetExecutionContext, config: BaselineConfig, storage: FactoryStorage, base_model: BaseModel,
    embedder: Embedder, scripts: TrainingScripts, tracker: MlflowTracker, reference_model: ChatEndpoint,
) -> dg.MaterializeResult:
    """What the fine-tune must beat on the same eval rows: majority class, TF-IDF and MiniLM + logistic regression,
    the base model zero- and few-shot on the served (label-constrained) path, and a larger model when configured."""
    key = context.partition_key
    task = storage.task_for(key)
    contract = task.build_contract()
    folder = storage.asset_dir(key, "baseline_report")
    sets = {p.stem: rows for p in sorted(storage.asset_dir(key, "eval_sets").glob("*.jsonl")) if (rows := read_jsonl(p))}
    train = read_jsonl(storage.asset_dir(key, "dataset_splits") / "train.jsonl")
    models, skipped = {}, {}
    labels = getattr(contract, "labels", None)
    if not labels:
        skipped["classical"] = "the task is not a classification task"
    else:
        encoder = embedder.load()
        train_embeddings = embedder.encode([r["text"] for r in train], encoder)
        predictors = classical_predictors([r["text"] for r in train], [r["target"] for r in train], train_embeddings,
                                          lambda texts: embedder.encode(texts, encoder))
        for name, predict in predictors.items():
            models[name] = {}
            for set_name, rows in sets.items():
                models[name][set_name], predictions = score_predictor(predict, rows, contract, config.latency_rows)
                write_jsonl(folder / name / f"predictions-{set_name}.jsonl", predictions)
        # Kept whole: with `encoder_candidate` the eval report scores it through the served runtime and may release it.
        save_encoder(folder / "minilm_logreg" / "model", predictors["minilm_logreg"].model, embedder.model)
        gguf = _base_gguf(context, base_model, scripts, storage, key, folder)
        prompt = label_prompt(sorted(contract.render(label) for label in labels))
        test_embeddings = embedder.encode([r["text"] for r in sets["test"]], encoder)
        few_shot = few_shot_prompts(prompt, test_embeddings, train_embeddings, train, contract.render, config.few_shot_examples)
        few_shot_file = write_jsonl(folder / "inputs" / "test-few-shot.jsonl",
                                    [{**r, "system_prompt": p} for r, p in zip(sets["test"], few_shot)])
        inputs = {"base_zero_shot": str(storage.asset_dir(key, "eval_sets") / "test.jsonl"), "base_few_shot": str(few_shot_file)}
        scored = scripts.run_each(context, "factory.training.evaluate", [EvalConfig(
            model=str(gguf), task_dir=str(task.folder), eval_files={"test": file}, system_prompt=prompt,
            limit=config.base_model_rows, output_dir=str(folder / name)) for name, file in inputs.items()],
            storage.asset_dir(key, "_configs"))
        models.update({name: result["sets"] for name, result in zip(inputs, scored)})
    if reference_model.configured:
        models["reference_model"] = _reference_scores(reference_model, task, contract, sets["test"], config.reference_rows, folder)
    else:
        skipped["reference_model"] = "skipped: no endpoint (set FACTORY_REFERENCE_BASE_URL and FACTORY_REFERENCE_MODEL)"
    report = {"models": models, "skipped": skipped, "train_rows": len(train)}
    write_json(folder / "report.json", report)
    with tracker.run(context, {"base_model": base_model.spec, "few_shot_examples": config.few_shot_examples}) as run:
        for name, by_set in models.items():
            for set_name, scores in by_set.items():
                run.log_metrics(scores, prefix=f"{name}.{set_name}.")
        run.log_artifacts(folder / "report.json")
    return dg.MaterializeResult(metadata={
        **run.metadata(),
        **{f"{name}_test_macro_f1": s["test"].get("macro_f1", s["test"].get("exact_match", 0.0))
           for name, s in models.items() if "test" in s},
        "skipped": dg.MetadataValue.json(skipped),
    })


def _base_gguf(context, base_model: BaseModel, scripts: TrainingScripts, storage: FactoryStorage, key: str, folder):
    """The untrained model as a GGUF: the packaged file, or a Hugging Face base exported like the fine-tunes are."""
    gguf = base_model.source_gguf()
    if gguf is None:
        export = scripts.run(context, "factory.training.export_gguf", ExportConfig(
            base_model_dir=str(base_model.hf_dir()), output_dir=str(folder / "base_gguf")), storage.asset_dir(key, "_configs"))
        gguf = folder / "base_gguf" / export["files"]["q8_0"]["file"]
    return gguf


def _reference_scores(endpoint: ChatEndpoint, task, contract, rows: list[dict], limit: int, folder) -> dict:
    """The larger model through its OpenAI-compatible endpoint, with the task's own prompt; cost from its token usage."""
    import time

    from factory.lib.files import sample_rows
    from factory.lib.metrics import score_predictions

    rows = sample_rows(rows, limit)
    predictions, cost, wall = [], 0.0, time.perf_counter()
    for row in rows:
        started = time.perf_counter()
        answer, usage = endpoint.chat(task.messages(row["text"]), max_tokens=32)
        cost += endpoint.cost(usage)
        predictions.append({"id": row["id"], "target": row["target"], "answer": answer,
                            "prediction": contract.parse_answer(answer), "latency_ms": (time.perf_counter() - started) * 1000})
    write_jsonl(folder / "reference_model" / "predictions-test.jsonl", predictions)
    scores = score_predictions(predictions, contract, time.perf_counter() - wall, 0.0)
    scores["cost_per_1k"] = cost / len(rows) * 1000
    return {"test": scores}
