"""The whole graph for one partition on the real packaged model at tiny sizes, run once per session through the CLI
(`released_version`): trains a few steps, exports GGUFs, chooses a quantization, scores the served path beside every
baseline, passes the release gates and registers the champion."""
import json
import re

import pytest

from factory.lib.files import read_jsonl

MATERIALISED = {"eval_sets", "seed_examples", "generated_examples", "judged_examples", "accepted_examples", "dataset_splits",
                "baseline_report", "training_recipe", "lora_adapter", "gguf_model", "eval_report", "released_model"}


def test_factory_run_materialises_every_stage_and_prints_the_served_table(released_version):
    assert released_version["exit_code"] == 0, released_version["stdout"]
    out = released_version["stdout"]
    assert re.search(r"\| finetuned_gguf_q\w+ \| 3 \| ", out)  # the served model's row, on all 3 test rows
    for baseline in ("majority", "tfidf_logreg", "minilm_logreg", "base_zero_shot", "base_few_shot"):
        assert f"| {baseline} |" in out
    assert "reference_model: skipped: no endpoint" in out
    assert "Release gates: all passed" in out and "Champion:    factory.tiny version 1 (alias champion)" in out
    assert "Quantization: smallest file within 0.01 of the best dev score" in out
    version = released_version["version"]
    assert {p.name for p in version.iterdir() if not p.name.startswith(("_", "."))} == MATERIALISED


def test_the_served_model_answers_only_labels_with_confidences(released_version):
    version = released_version["version"]
    report = json.loads((version / "eval_report" / "report.json").read_text())
    served = report["served_model"]
    assert served == f"finetuned_gguf_{report['quantization']['chosen']}" and report["model_order"][-1] == served
    assert set(report["models"][served]) == {"dev", "test", "golden", "adversarial"}
    for name, scores in report["models"][served].items():
        assert scores["invalid_rate"] == 0.0, name
        assert 0.0 <= scores["ece"] <= 1.0 and scores["latency_p95_ms"] >= scores["latency_p50_ms"] > 0
        assert sum(map(sum, scores["confusion"]["matrix"])) == scores["rows"]
    for row in read_jsonl(version / "eval_report" / served / "predictions-test.jsonl"):
        assert row["prediction"] in {"billing", "shipping", "login"} and 0.0 < row["confidence"] <= 1.0
    assert report["models"]["finetuned_hf"]["test"]["rows"] == 3
    assert report["models"]["majority"]["test"]["accuracy"] == pytest.approx(1 / 3)


def test_the_quantization_is_chosen_on_dev_and_is_the_smallest_within_tolerance(released_version):
    choice = json.loads((released_version["version"] / "gguf_model" / "choice.json").read_text())
    assert set(choice["dev_scores"]) == {"q8_0", "q5_k_m", "q4_k_m"}
    best = max(choice["dev_scores"].values())
    eligible = [k for k, v in choice["dev_scores"].items() if v >= best - choice["tolerance"]]
    assert choice["chosen"] == min(eligible, key=lambda k: choice["bytes"][k])
    assert choice["bytes"]["q4_k_m"] < choice["bytes"]["q8_0"]


def test_served_gguf_and_the_model_before_export_give_the_same_answers(released_version):
    version = released_version["version"]
    report = json.loads((version / "eval_report" / "report.json").read_text())
    served = report["served_model"]
    hf = {p["id"]: p["answer"] for p in read_jsonl(version / "eval_report" / "finetuned_hf" / "predictions-test.jsonl")}
    free = {p["id"]: p["answer"] for p in read_jsonl(version / "eval_report" / f"{served}_free" / "predictions-test.jsonl")}
    assert hf and hf == free


def test_the_release_is_registered_as_champion_with_a_card_and_a_modelfile(released_version):
    from llama_cpp import Llama
    from mlflow.tracking import MlflowClient

    from factory.lib.release import modelfile_prompt
    from factory.runtime.prompt import GGUFPrompt

    released = released_version["version"] / "released_model"
    release = json.loads((released / "release.json").read_text())
    client = MlflowClient(tracking_uri=f"sqlite:///{released_version['root'] / 'mlflow' / 'mlflow.db'}")
    champion = client.get_model_version_by_alias("factory.tiny", "champion")
    assert int(champion.version) == release["version"] == 1 and champion.tags["dagster.partition"] == "tiny.v1"
    assert champion.tags["sha256"] == release["sha256"]
    assert [a.path for a in client.list_artifacts(champion.run_id, "gguf")] == [f"gguf/{release['gguf']}"]
    # the Modelfile's template gives the very prompt the GGUF's own template renders
    text = (released / "Modelfile").read_text()
    assert text == (released_version["version"] / "gguf_model" / "Modelfile").read_text()  # made at export, released as is
    assert text.startswith(f"FROM ./{release['gguf']}\n") and "PARAMETER temperature 0" in text
    prompt = GGUFPrompt(Llama(model_path=str(released / release["gguf"]), vocab_only=True, verbose=False))
    messages = [{"role": "system", "content": "Sort it."}, {"role": "user", "content": "Where is my parcel?"}]
    assert modelfile_prompt(text, "Sort it.", "Where is my parcel?") == prompt.text(messages)
    assert f'PARAMETER stop "{prompt.eos_text}"' in text
    card = (released / "MODEL_CARD.md").read_text()
    assert "# tiny v1 (dataset version tiny.v1)" in card and "| finetuned_gguf_" in card
    assert f"- Base model: smollm2-135m; method: lora; recipe: {released_version['recipe']}" in card


def test_mlflow_has_one_run_per_asset_with_its_id_in_dagster_metadata(released_version):
    import dagster as dg
    from mlflow.tracking import MlflowClient

    root = released_version["root"]
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("factory")
    runs = client.search_runs([experiment.experiment_id], "tags.`dagster.partition` = 'tiny.v1'")
    by_asset = {r.data.tags["dagster.asset_key"]: r for r in runs}
    assert set(by_asset) == {"baseline_report", "lora_adapter", "gguf_model", "eval_report", "released_model"}
    instance = dg.DagsterInstance.from_config(str(root / "dagster"))
    for name, run in by_asset.items():
        event = instance.get_latest_materialization_event(dg.AssetKey(name))
        assert event.asset_materialization.metadata["mlflow_run_id"].value == run.info.run_id
    assert by_asset["lora_adapter"].data.params["learning_rate"] == "0.002"
    assert "train_loss" in by_asset["lora_adapter"].data.metrics
    assert {a.path for a in client.list_artifacts(by_asset["eval_report"].info.run_id)} == {
        "report.json", "report.md", "report.html", "repair_targets.json", "confusion-test.png"}


def test_inference_benchmark_runs_on_the_exported_model(released_version, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    import llama_cpp

    version = released_version["version"]
    bench = Path(__file__).resolve().parents[1] / "bench" / "inference.py"
    # One client: each path and concurrency loads its models in worker processes of its own, seconds each.
    subprocess.run([sys.executable, str(bench), "--version-dir", str(version), "--rows", "3", "--concurrency", "1",
                    "--out", str(tmp_path)], check=True)
    result = json.loads((tmp_path / "inference.json").read_text())
    assert set(result["results"]) == {f"{p}@1" for p in ("factory_classify", "llama_cpp_chat", "transformers_generate")}
    assert result["results"]["factory_classify@1"]["invalid_rate"] == 0.0
    assert result["ratios"]["classify_vs_chat_latency_p50"] > 0
    breakdown = result["classify_breakdown"]
    assert breakdown["new_prompt_tokens_mean"] >= 1 and breakdown["prompt_ms_p50"] > 0
    # the system prompt stays cached: each request evaluates only part of its prompt
    assert breakdown["new_prompt_tokens_mean"] < breakdown["prompt_tokens_mean"]
    assert result["ratios"]["prompt_only_vs_chat_latency_p50"] > 0
    assert result["llama_cpp"]["version"] == llama_cpp.__version__ and result["llama_cpp"]["cpu_features"]


def test_training_learns_the_task_not_only_its_format(released_version):
    """Loss falls far below its start and the trained rows are answered far better than by the untrained model
    with the same prompt: valid labels alone would also come from a model trained on wrong targets."""
    from factory.integrations.models import packaged_gguf
    from factory.lib.task import load_task
    from factory.runtime.classifier import GGUFClassifier
    from factory.training.export_gguf import primary_gguf

    version = released_version["version"]
    summary = json.loads((version / "lora_adapter" / "summary.json").read_text())
    losses = [h["loss"] for h in summary["log_history"] if "loss" in h]
    assert summary["precision"] == "fp32" and len(losses) == 14
    assert min(losses[-3:]) < 0.25 * losses[0]
    task = load_task(released_version["root"] / "tasks" / "tiny")
    trained = read_jsonl(version / "dataset_splits" / "train.jsonl")

    def accuracy(gguf) -> float:
        classifier = GGUFClassifier(str(gguf), task)
        return sum(classifier.classify(r["text"]).label == r["target"] for r in trained) / len(trained)

    tuned, base = accuracy(primary_gguf(version / "gguf_model")[2]), accuracy(packaged_gguf("smollm2-135m"))
    assert tuned >= 0.9 and tuned >= base + 0.3, (tuned, base)


def test_scoring_again_gives_identical_answers_and_metrics(released_version, tmp_path):
    from factory.training.evaluate import EvalConfig
    from factory.training.evaluate import main as evaluate
    from factory.training.export_gguf import primary_gguf

    version = released_version["version"]
    served = json.loads((version / "eval_report" / "report.json").read_text())["served_model"]
    again = evaluate(EvalConfig(model=str(primary_gguf(version / "gguf_model")[2]),
                                task_dir=str(released_version["root"] / "tasks" / "tiny"),
                                eval_files={"test": str(version / "eval_sets" / "test.jsonl")},
                                output_dir=str(tmp_path / "again")), log=lambda _: None)["sets"]["test"]
    before = json.loads((version / "eval_report" / served / "summary.json").read_text())["sets"]["test"]
    timing = ("latency_p50_ms", "latency_p95_ms", "requests_per_s", "cpu_seconds_per_request", "peak_rss_mib")
    assert {k: v for k, v in again.items() if k not in timing} == {k: v for k, v in before.items() if k not in timing}
    keep = ("id", "prediction", "answer", "confidence")
    assert [{k: p[k] for k in keep} for p in read_jsonl(tmp_path / "again" / "predictions-test.jsonl")] == \
        [{k: p[k] for k in keep} for p in read_jsonl(version / "eval_report" / served / "predictions-test.jsonl")]


@pytest.mark.parametrize("script, config_name, first_file", [
    ("export_gguf", "export_gguf-tiny.v1-gguf_model.json", "merged"),
    ("evaluate", "evaluate-eval_report-finetuned_gguf_q*.json", None),  # the served path, whichever quantization
])
def test_a_killed_export_or_evaluation_leaves_the_last_finished_output_and_a_rerun_starts_clean(
        released_version, tmp_path, script, config_name, first_file):
    """kill -9 mid-stage: the finished output from before stays whole under its name, the scratch folder is never
    read, and running the stage again writes a complete output."""
    import shutil
    import signal
    import subprocess
    import sys
    import time

    version = released_version["version"]
    [config_file] = [p for p in (version / "_configs").glob(config_name) if not p.stem.endswith("_free")]
    config = json.loads(config_file.read_text())
    finished = tmp_path / "out"
    shutil.copytree(config["output_dir"], finished)  # what the last finished run left
    before = {p.relative_to(finished): p.read_bytes() for p in finished.rglob("*") if p.is_file()}
    path = tmp_path / "config.json"
    if script == "export_gguf":
        config["quantizations"] = config["quantizations"][:1]  # one is enough to be caught mid-way and to finish
    path.write_text(json.dumps({**config, "output_dir": str(finished)}))
    command = [sys.executable, "-m", f"factory.training.{script}", "--config", str(path)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120

    def mid_way() -> bool:
        scratch = list(tmp_path.glob(".partial-out-*"))
        return bool(scratch) and (first_file is None or (scratch[0] / first_file).exists())

    while not mid_way():
        assert process.poll() is None and time.monotonic() < deadline, f"{script} ended before it was caught mid-way"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert {p.relative_to(finished): p.read_bytes() for p in finished.rglob("*") if p.is_file()} == before
    assert list(tmp_path.glob(".partial-out-*"))  # the killed run's scratch, under a name no stage reads

    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    summary = json.loads((finished / "summary.json").read_text())
    if script == "export_gguf":
        assert all((finished / f["file"]).stat().st_size > 1_000_000 for f in summary["files"].values())
    else:
        assert {name: len(read_jsonl(finished / f"predictions-{name}.jsonl")) for name in config["eval_files"]} == {
            name: len(read_jsonl(file)) for name, file in config["eval_files"].items()}
