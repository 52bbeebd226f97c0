"""Smoke tests: every benchmark script runs on a tiny input and writes its result, so none of them rots."""
import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from factory.lib.files import read_jsonl
from factory.lib.task import load_task
from factory_tests.conftest import TINY_EVAL, TINY_SEEDS

BENCH = Path(__file__).resolve().parents[1] / "bench"


def run(script: str, *args: str, cwd: Path) -> None:
    subprocess.run([sys.executable, str(BENCH / script), *args], cwd=cwd, check=True)


def bench_module(name: str, monkeypatch):
    """A bench script imported as when run: its folder first on the path."""
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quality_benchmark_reads_the_report_of_a_version_already_run(tmp_path, released_version):
    # Importing and running a version is `factory task import`, `version new` and `factory run --config` (the session's
    # released version came from the last two); this reads the version as a Banking77 run's is read.
    version = released_version["version"]
    run("quality.py", "--work", str(released_version["root"]), "--version", "tiny.v1", "--out", str(tmp_path / "results"),
        cwd=tmp_path)
    result = json.loads((tmp_path / "results" / "quality_tiny.v1.json").read_text())
    report = json.loads((version / "eval_report" / "report.json").read_text())
    served = result["served_model"]
    assert served == report["served_model"] and result["quantization"]["chosen"] == report["quantization"]["chosen"]
    assert {"majority", "tfidf_logreg", "minilm_logreg", "base_zero_shot", "base_few_shot", "finetuned_hf",
            f"{served}_free", served} == set(result["models"])
    assert result["models"]["base_zero_shot"]["rows"] == 2  # the run's --config reached baseline_report
    assert result["models"][served]["rows"] == result["test_rows"] == 3 and result["labels"] == 3
    assert result["train_rows"] == sum(map(len, TINY_SEEDS.values())) and result["recipe"] == str(released_version["recipe"])
    assert result["adapter"]["train_rows"] == len((version / "dataset_splits" / "train.jsonl").read_text().splitlines())
    assert result["head_to_head"]["baseline"] == result["best_baseline"] and result["head_to_head"]["rows"] == 3
    assert result["stage_seconds"]["lora_adapter"] > 0 and set(result["stage_seconds"]) >= {"eval_report", "baseline_report"}
    assert not {"run_config", "command_seconds", "validation_fraction"} & set(result)  # not this script's run: not claimed


def test_quality_benchmark_runs_a_valid_config_and_keeps_a_work_folders_answers(tmp_path, monkeypatch):
    import dagster as dg

    from factory.cli import main
    from factory.definitions import defs

    quality = bench_module("quality", monkeypatch)
    args = argparse.Namespace(quantizations="q8_0,q4_k_m", base_rows=3, hf_rows=3, variants_per_seed=0,
                              pseudo_labels_per_label=2, validation_fraction=0.0, seed=0, name=None,
                              teacher_rows_per_label=0, no_judge=False, reworded_threshold=0.85)
    job = defs().resolve_job_def("factory_pipeline")
    assert dg.validate_run_config(job, quality.run_config(args))["ops"]["dataset_splits"]["config"]["validation_fraction"] == 0
    taught = argparse.Namespace(**{**vars(args), "teacher_rows_per_label": 4, "no_judge": True, "reworded_threshold": 1.01})
    ops = dg.validate_run_config(job, quality.run_config(taught))["ops"]
    assert ops["generated_examples"]["config"]["use_teacher"] and not ops["judged_examples"]["config"]["use_judge"]
    assert ops["accepted_examples"]["config"]["reworded_copy_threshold"] == 1.01
    assert quality.result_name(taught, "pl10") == "quality_pl10_pseudo2_teacher4_nojudge_noreworded"
    misspelt = quality.run_config(args)
    misspelt["ops"]["gguf_model"]["config"]["quantization"] = misspelt["ops"]["gguf_model"]["config"].pop("quantizations")
    with pytest.raises(dg.DagsterInvalidConfigError, match='unexpected config entry "quantization"'):
        dg.validate_run_config(job, misspelt)

    assert quality.result_name(args, "pl10") == "quality_pl10_pseudo2"  # never the seeds-only run's file
    assert quality.result_name(argparse.Namespace(name=None, variants_per_seed=1, pseudo_labels_per_label=0,
                                                  teacher_rows_per_label=0, reworded_threshold=0.85), "all") == "quality_all_variants1"
    assert quality.result_name(argparse.Namespace(name="mine", variants_per_seed=0, pseudo_labels_per_label=0), "all") == "mine"

    data, work = tmp_path / "labelled", tmp_path / "work"
    data.mkdir()
    rows = [(t, lab) for lab, texts in TINY_SEEDS.items() for t in texts] + TINY_EVAL["dev"] + TINY_EVAL["golden"]
    (data / "train.jsonl").write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows))
    (data / "test.jsonl").write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in TINY_EVAL["test"]))
    monkeypatch.setenv("FACTORY_DATA_ROOT", str(work))
    assert main(["task", "import", str(data / "train.jsonl"), "--name", "bench_full", "--test-file", str(data / "test.jsonl"),
                 "--dev-per-label", "2", "--golden-per-label", "2"]) == 0
    # self-training: the rows a regime leaves out come back as texts without labels, never beside their own seeds
    full = work / "tasks" / "bench_full"
    kept = quality.subsample(full, work / "tasks" / "bench_pl2", 2, None, 0, unlabeled=True)
    seeds, pool = read_jsonl(kept / "seeds.jsonl"), read_jsonl(kept / "unlabeled.jsonl")
    assert len(seeds) == 2 * len(TINY_SEEDS) and all(set(row) - {"_line"} == {"id", "text"} for row in pool)
    assert sorted(r["id"] for r in seeds + pool) == sorted(r["id"] for r in read_jsonl(full / "seeds.jsonl"))
    # teacher rows: refused without a teacher; with one, the task copy's `generation` plan is what was asked
    plan = argparse.Namespace(teacher_rows_per_label=4, teacher_rows_per_request=2, teacher_mix="canonical=0.5,near_miss=0.5",
                              teacher_max_chars=200)
    monkeypatch.delenv("FACTORY_TEACHER_BACKEND", raising=False)
    with pytest.raises(SystemExit, match="needs a teacher: set FACTORY_TEACHER_BACKEND"):
        quality.with_generation(kept, plan)
    monkeypatch.setenv("FACTORY_TEACHER_BACKEND", "local")
    quality.with_generation(kept, plan)
    generation = load_task(kept).generation
    assert (generation.rows_per_label, generation.rows_per_request, generation.max_chars) == (4, 2, 200)
    assert generation.mix == {"canonical": 0.5, "near_miss": 0.5}
    # a work folder keeps the answers it was imported with: asking for others is refused before anything runs
    refused = subprocess.run([sys.executable, str(BENCH / "quality.py"), "--data", str(data), "--work", str(work),
                              "--distinct-first-words", "--out", str(tmp_path / "results")],
                             cwd=tmp_path, capture_output=True, text=True)
    assert refused.returncode != 0 and not (tmp_path / "results").exists() and not (work / "versions").exists()
    assert "imported with answers as labels, not distinct first words; use another --work folder" in refused.stderr
    both = subprocess.run([sys.executable, str(BENCH / "quality.py"), "--data", str(data), "--version", "bench_full.v1"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert both.returncode == 2 and "give --data (import and run) or --version" in both.stderr
    unrun = subprocess.run([sys.executable, str(BENCH / "quality.py"), "--work", str(work), "--version", "bench_full.v1"],
                           cwd=tmp_path, capture_output=True, text=True)
    assert unrun.returncode == 1 and "bench_full.v1: no eval report; run the version first" in unrun.stderr


@pytest.mark.slow
def test_qlora_cuda_benchmark_scores_an_adapter_trained_elsewhere(tmp_path, released_version):
    # qlora_cuda.py score, the released version's own adapter standing in for one trained on a GPU (train needs CUDA):
    # exported again by hand, it must label every test row as the graph's export did
    version = released_version["version"]
    stand_in = tmp_path / "qlora_cuda_train.json"
    stand_in.write_text(json.dumps({"trained": True, "gpu": {"name": "none"}, "libraries": {}, "commit": "x", "machine": {},
                                    "config": {"per_device_train_batch_size": 2}, "probes": [], "qlora": {"train_seconds": 1.0},
                                    "cpu_lora": {}}))
    adapter = tmp_path / "gpu_run" / "adapter"
    shutil.copytree(version / "lora_adapter" / "adapter", adapter)
    run("qlora_cuda.py", "score", "--version", str(version), "--task", str(released_version["root"] / "tasks" / "tiny"),
        "--adapter", str(adapter), "--train-result", str(stand_in), "--out", str(tmp_path / "results"), cwd=tmp_path)
    scored = json.loads((tmp_path / "results" / "qlora_cuda.json").read_text())
    # The mechanics only: with no GPU here the stand-in is the CPU adapter itself, so comparing the two scores says nothing.
    assert scored["test_rows"] == scored["head_to_head"]["rows"] == 3 and (tmp_path / "gpu_run" / "gguf" / "model-q8_0.gguf").exists()
    assert {"qlora_gguf_q8_0", "cpu_lora_gguf_q8_0"} <= set(scored) and scored["qlora_gguf_q8_0"]["rows"] == 3


def test_qlora_cuda_benchmark_refuses_to_train_without_a_gpu_or_score_a_probe(tmp_path):
    def qlora_cuda(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(BENCH / "qlora_cuda.py"), *args, "--version", str(tmp_path), "--task",
                               str(tmp_path), "--out", str(tmp_path / "out")], cwd=tmp_path, capture_output=True, text=True)

    done = qlora_cuda("train", "--base-model", "smollm2-135m")
    assert done.returncode != 0 and "train needs a CUDA GPU" in done.stderr and not (tmp_path / "out").exists()
    probe_only = tmp_path / "qlora_cuda_train.json"
    probe_only.write_text(json.dumps({"trained": False, "projected_seconds": 900.0, "seconds_left": 400.0}))
    done = qlora_cuda("score", "--adapter", str(tmp_path / "run" / "adapter"), "--train-result", str(probe_only))
    assert done.returncode != 0 and "only probed (projected 900 s, 400 s left)" in done.stderr


def test_run_cost_benchmark_reads_a_run_already_made(tmp_path, released_version):
    # Running a version is `factory version new` + `factory run`, as in the quality benchmark above; this reads one.
    run("run_cost.py", "--data-root", str(released_version["root"]), "--version", "tiny.v1",
        "--out", str(tmp_path / "results"), cwd=tmp_path)
    result = json.loads((tmp_path / "results" / "run_cost_tiny.json").read_text())
    assert set(result["stages"]) >= {"seed_examples", "lora_adapter", "gguf_model", "eval_report", "released_model"}
    assert result["stages"]["lora_adapter"]["script_peak_rss_mib"] > 100
    assert result["total_seconds"] == pytest.approx(sum(s["seconds"] for s in result["stages"].values()), abs=0.5)


def test_tables_render_every_committed_result(tmp_path):
    out = subprocess.run([sys.executable, str(BENCH / "tables.py")], check=True, capture_output=True, text=True).stdout
    for path in (BENCH / "results").glob("*.json"):
        assert f"### {path.stem}" in out
    assert "| model | rows scored | accuracy |" in out and "| path @ concurrency |" in out
    assert "### learning curve" in out and "| 770 | 635 | smollm2-135m | three_epochs | 3 |" in out


@pytest.mark.slow
def test_training_step_benchmark_compares_lm_heads_and_precisions(tmp_path, tiny_task, resources, monkeypatch):
    rows = tmp_path / "train.jsonl"
    rows.write_text("".join(json.dumps({"id": f"{lab}-{i}", "text": t, "target": lab}) + "\n"
                            for lab, texts in TINY_SEEDS.items() for i, t in enumerate(texts)))
    config = tmp_path / "sft.json"
    config.write_text(json.dumps({"base_model_dir": str(resources["base_model"].hf_dir()), "task_dir": str(tiny_task),
                                  "train_file": str(rows), "output_dir": str(tmp_path / "unused"),
                                  "per_device_train_batch_size": 2, "max_length": 256}))
    run("training_step.py", "--sft-config", str(config), "--steps", "1", "--repeats", "1", "--out", str(tmp_path / "results"),
        cwd=tmp_path)
    result = json.loads((tmp_path / "results" / "training_step.json").read_text())
    assert set(result["modes"]) == {"every_position", "answer_only"} and result["speedup"] > 0
    assert all(len(m["runs"]) == 1 and m["runs"][0]["steps"] == 1 for m in result["modes"].values())
    # `--compare precision` runs the same workers with another setting (here in this process, already importing torch):
    # the trainer reports the precision it ran at, so a setting that did not reach it fails here
    training_step = bench_module("training_step", monkeypatch)
    assert {mode: training_step.worker(str(config), mode, 1)["precision"]
            for mode in training_step.COMPARISONS["precision"]} == {"fp32": "fp32", "bf16": "bf16"}


def test_install_benchmark_times_each_makefile_step(tmp_path):
    # A Makefile of the real one's shape: a venv-keyed stamp target with a comment line, and a second target.
    (tmp_path / "Makefile").write_text(
        "VENV := .venv\nDAGSTER_HOME := dh\ninstall: $(VENV)/.installed $(DAGSTER_HOME)/dagster.yaml\n"
        "$(VENV)/.installed:\n\tmkdir -p $(VENV)\n\t# a comment make passes to the shell\n"
        "\tpython3 -c \"open('$(VENV)/pkg', 'w').write('x' * 4096)\"\n\ttouch $@\n"
        "$(DAGSTER_HOME)/dagster.yaml:\n\tmkdir -p $(DAGSTER_HOME)\n\ttouch $@\n")
    run("install.py", "--repo", str(tmp_path), "--out", str(tmp_path / "results"), cwd=tmp_path)
    result = json.loads((tmp_path / "results" / "install.json").read_text())
    assert [s["step"] for s in result["steps"]] == ["mkdir -p", "python3 -c", "touch", "mkdir -p", "touch"]
    assert result["total_seconds"] >= sum(s["seconds"] for s in result["steps"]) - 0.5
    assert not (tmp_path / ".venv").exists()  # it installs into a scratch venv, never the checkout's own


def test_qlora_cuda_pack_keeps_only_the_cuda_13_and_cpu_libraries_of_bitsandbytes(tmp_path, monkeypatch):
    import zipfile

    monkeypatch.syspath_prepend(str(BENCH))
    from qlora_cuda import strip_bitsandbytes

    names = ["bitsandbytes/__init__.py", "bitsandbytes/libbitsandbytes_cpu.so", "bitsandbytes/libbitsandbytes_cuda118.so",
             "bitsandbytes/libbitsandbytes_cuda130.so", "bitsandbytes/libbitsandbytes_cuda132.so",
             "bitsandbytes/libbitsandbytes_rocm64.so"]
    wheel = tmp_path / "bitsandbytes-0.50.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name in names:
            archive.writestr(name, name)
        archive.writestr("bitsandbytes-0.50.2.dist-info/RECORD", "".join(f"{n},sha256=x,1\n" for n in names))
    strip_bitsandbytes(wheel)
    kept = [n for i, n in enumerate(names) if i in (0, 1, 3, 4)]
    with zipfile.ZipFile(wheel) as archive:
        assert sorted(archive.namelist()) == sorted([*kept, "bitsandbytes-0.50.2.dist-info/RECORD"])
        assert [line.split(",")[0] for line in archive.read("bitsandbytes-0.50.2.dist-info/RECORD").decode().splitlines()] == kept


def test_serve_load_benchmark_against_the_llama_cpp_server(released_version, tmp_path):
    from factory_tests.conftest import clone_data_root

    root = clone_data_root(released_version["root"], tmp_path / "data")
    run("serve_load.py", "--data-root", str(root), "--task", "tiny", "--seconds", "2", "--concurrency", "2",
        "--threads", "2", "--workers", "2", "--out", str(tmp_path), cwd=tmp_path)
    result = json.loads((tmp_path / "serve_load.json").read_text())
    assert result["threads"] == 2 and result["workers"] == 2
    assert "llama.cpp threads: 2 in 2 workers (" in Path("/tmp/serve_load_factory_serve.log").read_text()
    served, anchor = result["results"]
    assert (served["server"], anchor["server"]) == ("factory_serve", "llama_cpp_server")
    assert served["requests"] > 0 and served["failed"] == 0 and anchor["requests"] > 0
    assert served["log_lines"] == served["requests"] and served["log_duplicates"] == 0
    assert served["throughput_vs_anchor"] == round(served["requests_per_s"] / anchor["requests_per_s"], 2)
