"""Tier 5: the whole graph for one partition on the real packaged model at tiny sizes.

Trains a few steps on the tiny task, exports a GGUF, and checks that llama.cpp answers with
labels from the contract, exactly as the model did before export.
"""
import json

import dagster as dg
import pytest
import yaml

from factory.lib.files import read_jsonl

# Enough steps at a high rate for 135M parameters to learn three labels.
TINY_RECIPE = {"lora_r": 8, "lora_alpha": 16, "learning_rate": 0.002, "max_steps": 14,
               "per_device_train_batch_size": 4, "max_length": 256, "warmup_ratio": 0.0, "seed": 0}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, model_cache):
    from factory_tests.conftest import make_tiny_task

    root = tmp_path_factory.mktemp("e2e") / "data"
    make_tiny_task(root / "tasks")
    recipe = root / "tiny_recipe.yaml"
    recipe.write_text(yaml.safe_dump(TINY_RECIPE))
    from factory.defs.resources import factory_resources
    from factory.pipeline import materialize_version, recipe_config

    resources = factory_resources(str(root), str(model_cache))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("dataset_version", ["tiny.v1"])
        result = materialize_version("tiny.v1", instance, resources, recipe_config(str(recipe)), raise_on_error=False)
        yield result, root / "versions" / "tiny.v1", resources["storage"]


def test_every_stage_materialises_and_every_check_passes(pipeline):
    result, _, _ = pipeline
    assert result.success
    materialised = {e.event_specific_data.materialization.asset_key.to_user_string()
                    for e in result.get_asset_materialization_events()}
    assert materialised == {"eval_sets", "seed_examples", "generated_examples", "accepted_examples", "dataset_splits",
                            "baseline_report", "lora_adapter", "gguf_model", "eval_report"}
    assert all(c.passed for c in result.get_asset_check_evaluations())
    assert {c.check_name for c in result.get_asset_check_evaluations()} == {"accepted_examples_hold", "gguf_prompt_parity"}


def test_the_gguf_answers_with_labels_from_the_contract(pipeline):
    _, version, _ = pipeline
    report = json.loads((version / "eval_report" / "report.json").read_text())
    gguf = report["models"]["finetuned_gguf_q8_0"]
    assert set(gguf) == {"dev", "test", "golden", "adversarial"}
    for name, scores in gguf.items():
        assert scores["invalid_rate"] == 0.0, name
    answers = [p["answer"] for p in read_jsonl(version / "eval_report" / "gguf" / "predictions-test.jsonl")]
    assert set(answers) <= {"billing", "shipping", "login"}
    assert set(report["models"]) == {"tfidf_logreg", "base_model", "finetuned_hf", "finetuned_gguf_q8_0"}


def test_gguf_and_hf_model_give_the_same_answers(pipeline):
    _, version, _ = pipeline
    hf = {p["id"]: p["answer"] for p in read_jsonl(version / "eval_report" / "finetuned_hf" / "predictions-test.jsonl")}
    gguf = {p["id"]: p["answer"] for p in read_jsonl(version / "eval_report" / "gguf" / "predictions-test.jsonl")}
    assert hf and hf == gguf


def test_mlflow_has_one_run_per_asset_with_its_id_in_dagster_metadata(pipeline):
    from mlflow.tracking import MlflowClient

    result, _, storage = pipeline
    client = MlflowClient(tracking_uri=f"sqlite:///{storage.root / 'mlflow' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("factory")
    runs = client.search_runs([experiment.experiment_id], "tags.`dagster.partition` = 'tiny.v1'")
    by_asset = {r.data.tags["dagster.asset_key"]: r for r in runs}
    assert set(by_asset) == {"baseline_report", "lora_adapter", "gguf_model", "eval_report"}
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        name = materialization.asset_key.to_user_string()
        if name in by_asset:
            assert materialization.metadata["mlflow_run_id"].value == by_asset[name].info.run_id
    assert by_asset["lora_adapter"].data.params["learning_rate"] == "0.002"
    assert "train_loss" in by_asset["lora_adapter"].data.metrics
    assert [a.path for a in client.list_artifacts(by_asset["eval_report"].info.run_id)] == ["report.json", "report.md"]


def test_inference_benchmark_runs_on_the_exported_model(pipeline, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    import llama_cpp

    _, version, storage = pipeline
    bench = Path(__file__).resolve().parents[1] / "bench" / "inference.py"
    subprocess.run([sys.executable, str(bench), "--version-dir", str(version), "--rows", "3", "--concurrency", "1,2",
                    "--out", str(tmp_path)], check=True)
    result = json.loads((tmp_path / "inference.json").read_text())
    assert set(result["results"]) == {f"{p}@{c}" for p in ("factory_classify", "llama_cpp_chat", "transformers_generate")
                                      for c in (1, 2)}
    assert result["results"]["factory_classify@1"]["invalid_rate"] == 0.0
    assert result["ratios"]["classify_vs_chat_latency_p50"] > 0
    breakdown = result["classify_breakdown"]
    assert breakdown["new_prompt_tokens_mean"] >= 1 and breakdown["prompt_ms_p50"] > 0
    # the system prompt stays cached: each request evaluates only part of its prompt
    assert breakdown["new_prompt_tokens_mean"] < breakdown["prompt_tokens_mean"]
    assert result["ratios"]["prompt_only_vs_chat_latency_p50"] > 0
    assert result["llama_cpp"]["version"] == llama_cpp.__version__ and result["llama_cpp"]["cpu_features"]
