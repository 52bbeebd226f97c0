"""Model assets on their less-travelled paths: a training script that fails inside the asset, a base model given as a
local .gguf file, and a base model that must be exported first (a template of its own)."""
import json

import dagster as dg
import pytest
import yaml

from factory.lib.files import read_jsonl
from factory_tests.test_dataset_assets import CHAIN


def _assets(*names):
    from factory.definitions import defs

    loaded = defs()
    return [a for a in loaded.assets if any(k.to_user_string() in names for k in a.keys)]


def test_a_training_script_that_fails_fails_the_asset_and_leaves_nothing(resources, data_root, instance, tmp_path):
    from mlflow.tracking import MlflowClient

    recipe = tmp_path / "broken.yaml"  # valid settings, but no module of the model has this name: peft raises
    recipe.write_text(yaml.safe_dump({"target_modules": "no_such_module", "max_steps": 1, "quantization": "none"}))
    result = dg.materialize([*CHAIN, *_assets("training_recipe", "lora_adapter")], partition_key="tiny.v1",
                            resources=resources, instance=instance, raise_on_error=False,
                            run_config={"ops": {"training_recipe": {"config": {"recipe": str(recipe)}}}})
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    error = failure.step_failure_data.error
    message = error.cause.message if error.cause else error.message
    assert failure.step_key == "lora_adapter"
    assert "factory.training.sft failed: peft.utils.error.NoMatchingPeftModuleError: Target modules no_such_module not " \
           "found" in message
    version = data_root / "versions" / "tiny.v1"
    assert not (version / "lora_adapter").exists()
    client = MlflowClient(tracking_uri=f"sqlite:///{data_root / 'mlflow' / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("factory").experiment_id], "tags.`dagster.asset_key` = 'lora_adapter'")
    assert run.info.status == "FAILED"


@pytest.mark.slow
@pytest.mark.parametrize("chat_template, exported", [("", False), ("chatml", True)])
def test_a_local_gguf_base_model_is_scored_as_is_or_exported_first(data_root, instance, model_cache, chat_template, exported):
    from factory.defs.resources import factory_resources
    from factory.integrations.models import packaged_gguf

    gguf = str(packaged_gguf("smollm2-135m"))
    resources = factory_resources(str(data_root), str(model_cache), base_model=gguf, chat_template=chat_template)
    result = dg.materialize([*CHAIN, *_assets("baseline_report")], partition_key="tiny.v1", resources=resources,
                            instance=instance, run_config={"ops": {"baseline_report": {"config": {"base_model_rows": 2}}}})
    assert result.success
    folder = data_root / "versions" / "tiny.v1" / "baseline_report"
    assert (folder / "base_gguf" / "model-q8_0.gguf").exists() is exported
    summary = json.loads((folder / "base_zero_shot" / "summary.json").read_text())
    assert summary["model"] == (str(folder / "base_gguf" / "model-q8_0.gguf") if exported else gguf)
    report = json.loads((folder / "report.json").read_text())
    assert report["models"]["base_zero_shot"]["test"]["rows"] == 2 and report["models"]["base_zero_shot"]["test"]["invalid_rate"] == 0


@pytest.mark.slow
def test_a_reference_model_behind_an_openai_compatible_endpoint_is_scored_with_its_cost(
        data_root, instance, model_cache, llama_server):
    from factory.defs.resources import factory_resources
    from factory.integrations.llm_client import ChatEndpoint

    resources = factory_resources(str(data_root), str(model_cache))
    resources["reference_model"] = ChatEndpoint(base_url=llama_server["base_url"], model=llama_server["model"],
                                                price_per_1k_input_tokens=0.5, price_per_1k_output_tokens=1.5)
    result = dg.materialize([*CHAIN, *_assets("baseline_report")], partition_key="tiny.v1", resources=resources,
                            instance=instance, run_config={"ops": {"baseline_report": {"config": {"base_model_rows": 1}}}})
    assert result.success
    folder = data_root / "versions" / "tiny.v1" / "baseline_report"
    report = json.loads((folder / "report.json").read_text())
    scores = report["models"]["reference_model"]["test"]
    assert "reference_model" not in report["skipped"] and scores["rows"] == 3
    assert scores["cost_per_1k"] > 0 and scores["latency_p50_ms"] > 0  # priced from the tokens the server reported
    predictions = [json.loads(line) for line in (folder / "reference_model" / "predictions-test.jsonl").read_text().splitlines()]
    assert len(predictions) == 3 and all(p["answer"] for p in predictions)  # a free answer, parsed against the labels


def test_an_unreachable_reference_endpoint_fails_after_its_retries(data_root):
    from factory.integrations.llm_client import ChatEndpoint, EndpointError

    endpoint = ChatEndpoint(base_url="http://127.0.0.1:9/v1", model="x", retries=2, timeout_s=1)
    with pytest.raises(EndpointError, match="cannot connect.*gave up after 2 tries") as failure:
        endpoint.chat([{"role": "user", "content": "hi"}], max_tokens=4)
    assert failure.value.attempts == 2


@pytest.mark.slow
def test_editing_a_recipe_stales_only_the_fine_tunes_trained_with_it(resources, data_root, instance, tmp_path):
    from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
    from dagster._core.loader import LoadingContextForTest

    from factory.definitions import defs

    settings = {"lora_r": 4, "lora_alpha": 8, "max_steps": 1, "per_device_train_batch_size": 2, "max_length": 256,
                "quantization": "none", "precision": "fp32"}
    recipes = {"tiny.v1": tmp_path / "a.yaml", "tiny.v2": tmp_path / "b.yaml"}
    for seed, path in enumerate(recipes.values()):  # tiny.v2 also distils MiniLM + LR's out-of-fold probabilities
        path.write_text(yaml.safe_dump({**settings, "seed": seed, **({"distill_weight": 0.3} if seed else {})}))
    instance.add_dynamic_partitions("dataset_version", ["tiny.v2"])
    assets = [*CHAIN, *_assets("training_recipe", "lora_adapter")]
    for key, path in recipes.items():
        assert dg.materialize(assets, partition_key=key, resources=resources, instance=instance,
                              run_config={"ops": {"training_recipe": {"config": {"recipe": str(path)}}}}).success

    train = read_jsonl(data_root / "versions" / "tiny.v2" / "dataset_splits" / "train.jsonl")
    soft = read_jsonl(data_root / "versions" / "tiny.v2" / "_configs" / "soft_targets.jsonl")
    assert [r["id"] for r in soft] == [r["id"] for r in train]
    assert all(set(r["probabilities"]) == {"billing", "shipping", "login"} and
               abs(sum(r["probabilities"].values()) - 1) < 1e-6 for r in soft)
    trained = json.loads((data_root / "versions" / "tiny.v2" / "lora_adapter" / "summary.json").read_text())["config"]
    assert trained["distill_weight"] == 0.3 and trained["soft_targets_file"].endswith("soft_targets.jsonl")
    assert not (data_root / "versions" / "tiny.v1" / "_configs" / "soft_targets.jsonl").exists()

    def status(key):
        resolver = CachingStaleStatusResolver(instance, defs().resolve_asset_graph(), LoadingContextForTest(instance))
        return resolver.get_status(dg.AssetKey("lora_adapter"), key)

    assert status("tiny.v1") == status("tiny.v2") == StaleStatus.FRESH
    recipes["tiny.v1"].write_text(yaml.safe_dump({**settings, "seed": 0, "learning_rate": 0.01}))
    for key in recipes:  # a refresh with no recipe named keeps each version's own
        assert dg.materialize(_assets("training_recipe"), partition_key=key, resources=resources, instance=instance).success
    assert status("tiny.v1") == StaleStatus.STALE and status("tiny.v2") == StaleStatus.FRESH
    snapshot = data_root / "versions" / "tiny.v1" / "training_recipe" / "recipe.yaml"
    assert yaml.safe_load(snapshot.read_text())["learning_rate"] == 0.01
