"""The QLoRA path on a CUDA GPU: the factory's training script re-run on a finished CPU version's own config, where
`quantization: auto` means nf4 weights, then exported and scored here like any other fine-tune.

    # on the GPU machine: same rows, same recipe as the CPU run
    python bench/qlora_cuda.py train --version data/bench/versions/bench_full.v1 --task data/bench/tasks/bench_full \
        --base-model SmolLM2-135M-Instruct.Q4_1.gguf --out /tmp/qlora
    # for a lent GPU machine without network (bench/qlora_cuda_device.sh runs it there): pack here first
    .venv/bin/python bench/qlora_cuda.py pack --version data/bench/versions/bench_full.v1 --task data/bench/tasks/bench_full
    # back on the CPU machine: merge, export q8_0, classify every test row; the CPU version's GGUF on the same rows
    .venv/bin/python bench/qlora_cuda.py score --version data/bench/versions/bench_full.v1 --task data/bench/tasks/bench_full \
        --adapter /tmp/qlora/run/adapter --train-result /tmp/qlora/qlora_cuda_train.json
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import commit, write_result  # noqa: E402


def gpu() -> dict:
    import torch

    props = torch.cuda.get_device_properties(0)
    return {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1), "capability": f"{props.major}.{props.minor}",
            "torch": torch.__version__, "cuda": torch.version.cuda}


def library_versions() -> dict:
    from importlib.metadata import version

    return {name: version(name) for name in ("transformers", "peft", "trl", "bitsandbytes", "datasets", "accelerate")}


PROBE_VARIANTS = {"recipe": {}, "paged_adamw_8bit": {"optimizer": "paged_adamw_8bit"},
                  "gradient_checkpointing": {"gradient_checkpointing": True}}


def probe_row(name: str, summary: dict) -> dict:
    return {"variant": name, **{k: summary[k] for k in (
        "optimizer", "gradient_checkpointing", "steps", "seconds_per_step_median", "tokens_per_second", "peak_gpu_mib",
        "train_loss")}, "seconds_per_step": summary["train_seconds"] / summary["steps"]}


def train(args: argparse.Namespace) -> dict:
    """Probe the step time of the CPU run's exact config (and of variants), then train it whole if it fits the budget."""
    import torch

    from factory.integrations.models import hf_model_dir
    from factory.training.sft import SFTRunConfig
    from factory.training.sft import main as sft

    if not torch.cuda.is_available():
        raise SystemExit("train needs a CUDA GPU: on CPU the factory trains plain LoRA, which the quality benchmark measures")
    started = time.perf_counter()
    version, out = Path(args.version), Path(args.out)
    settings = json.loads((version / "_configs" / "sft.json").read_text())
    settings.update(base_model_dir=str(hf_model_dir(args.base_model, out / "cache")), task_dir=args.task,
                    train_file=str(version / "dataset_splits" / "train.jsonl"),
                    validation_file=str(version / "dataset_splits" / "validation.jsonl"))
    probes = []
    for name in ["recipe", *args.probe_variants]:
        summary = sft(SFTRunConfig(**{**settings, **PROBE_VARIANTS[name], "max_steps": args.probe_steps,
                                      "output_dir": str(out / f"probe_{name}")}))
        probes.append(probe_row(name, summary))
    steps = math.ceil(summary["train_rows"] / settings["per_device_train_batch_size"]) * settings["num_train_epochs"]
    projected = steps * probes[0]["seconds_per_step_median"] + 30  # the model load and the save
    left = args.budget_seconds - (time.perf_counter() - started)
    cpu_run = json.loads((version / "lora_adapter" / "summary.json").read_text())
    payload = {"gpu": gpu(), "libraries": library_versions(), "config": settings, "probes": probes,
               "projected_seconds": projected, "seconds_left": left, "trained": projected < left,
               "cpu_lora": {k: cpu_run.get(k) for k in ("train_rows", "train_loss", "train_seconds", "steps", "epochs",
                                                        "tokens_per_second", "quantization", "precision", "device", "peak_rss_mib")}}
    if payload["trained"]:  # never a shortened recipe: its accuracy would not compare with the CPU run's
        qlora = sft(SFTRunConfig(**{**settings, "output_dir": str(out / "run")}))
        if qlora["quantization"] != "nf4" or qlora["device"] != "cuda":
            raise SystemExit(f"expected nf4 on cuda, the run reports {qlora['quantization']} on {qlora['device']}")
        payload["qlora"] = qlora
    return payload


# What the GPU image lacks (it has torch, accelerate, numpy, pandas, pyarrow...), at the versions installed here.
CARRIED = ["bitsandbytes", "trl", "datasets", "dill", "multiprocess", "gguf", "dagster-pipes", "transformers", "peft",
           "pydantic", "pydantic_core", "annotated-types", "typing-inspection", "jsonschema", "jsonschema-specifications",
           "referencing", "rpds-py", "typing_extensions"]
CALL_BYTES = 64 * 2**20 - 2 * 2**20  # one device call carries 64 MiB, the repository (~1 MiB) included


def strip_bitsandbytes(wheel: Path) -> None:
    """Keep the CUDA 13 (the image's) and CPU libraries of the 17 bitsandbytes ships: 7 MiB instead of 43."""
    drop = lambda name: name.endswith(".so") and not re.search(r"libbitsandbytes_(cpu|cuda13\d)\.so$", name)  # noqa: E731
    scratch = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(scratch, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            if drop(info.filename):
                continue
            data = source.read(info.filename)
            if info.filename.endswith("RECORD"):
                data = b"".join(line + b"\n" for line in data.splitlines() if not drop(line.decode().split(",")[0]))
            target.writestr(info, data)
    scratch.replace(wheel)


def pack(args: argparse.Namespace) -> dict:
    """.devcarry/a (wheels, tokenizer and task, the GGUF's head) and .devcarry/b (its tail, the version's config and
    splits): the two loads bench/qlora_cuda_device.sh stages and runs on a GPU machine without network."""
    from importlib.metadata import version as installed

    from factory.integrations.models import source_gguf

    version, out = Path(args.version), Path(args.carry)
    shutil.rmtree(out, ignore_errors=True)
    first, second, wheels = out / "a", out / "b", out / "a" / "whl"
    for folder in (first, second, wheels):
        folder.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
                    "3.12", "--implementation", "cp", *[f"--platform={p}" for p in (
                        "manylinux_2_28_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "any")],
                    "-d", str(wheels), *[f"{name}=={installed(name)}" for name in CARRIED]], check=True)
    strip_bitsandbytes(next(wheels.glob("bitsandbytes-*.whl")))
    settings = json.loads((version / "_configs" / "sft.json").read_text())
    base = Path(settings["base_model_dir"])
    with tarfile.open(first / "tiny.tar.gz", "w:gz") as tiny:
        for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
            if (base / name).exists():
                tiny.add(base / name, f"model/{name}")
        tiny.add(args.task, "task")
    with tarfile.open(second / "version.tar.gz", "w:gz") as cpu_run:
        for name in ("_configs/sft.json", "dataset_splits", "lora_adapter/summary.json"):
            cpu_run.add(version / name, f"version/{name}")
    gguf = source_gguf(args.base_model)
    head = CALL_BYTES - sum(f.stat().st_size for f in first.rglob("*") if f.is_file())
    data = gguf.read_bytes()
    (first / "base.gguf.part1").write_bytes(data[:head])
    (second / "base.gguf.part2").write_bytes(data[head:])
    (second / "base.gguf.sha256").write_text(hashlib.sha256(data).hexdigest() + "\n")
    (second / "commit").write_text(commit() + "\n")  # the GPU machine's copy has no .git
    sizes = {load.name: sum(f.stat().st_size for f in load.rglob("*") if f.is_file()) for load in (first, second)}
    if max(sizes.values()) > CALL_BYTES:
        raise SystemExit(f"{out}: a load is over {CALL_BYTES} bytes ({sizes}); the base model is too large for two calls")
    print(json.dumps(sizes))
    return sizes


def classify_all(gguf: Path, task, rows: list[dict]) -> tuple[dict, dict]:
    from factory.lib.metrics import latency_summary
    from factory.runtime.classifier import GGUFClassifier

    classifier = GGUFClassifier(str(gguf), task)
    results = [classifier.classify(r["text"]) for r in rows]
    labels = {r["id"]: c.label for r, c in zip(rows, results)}
    metrics = task.build_contract().metrics([r["target"] for r in rows], [c.label for c in results])
    return {**metrics, "rows": len(rows), **latency_summary([c.latency_ms for c in results])}, labels


def score(args: argparse.Namespace) -> dict:
    """Export the GPU adapter as the graph would and classify every test row with it and with the CPU run's GGUF."""
    from factory.lib.examples import load_examples
    from factory.lib.task import load_task
    from factory.training.export_gguf import ExportConfig
    from factory.training.export_gguf import main as export

    trained = json.loads(Path(args.train_result).read_text())
    if not trained.get("trained"):
        raise SystemExit(f"{args.train_result}: the GPU run only probed (projected {trained['projected_seconds']:.0f} s, "
                         f"{trained['seconds_left']:.0f} s left); nothing to score")
    version = Path(args.version)
    task = load_task(args.task)
    exported = json.loads((version / "gguf_model" / "summary.json").read_text())
    out_dir = Path(args.adapter).parent / "gguf"
    export(ExportConfig(base_model_dir=exported["base_model_dir"], adapter_dir=args.adapter, output_dir=str(out_dir),
                        quantizations=["q8_0"]))
    test = load_examples(task.path("test"), task.build_contract(), "test")
    qlora, qlora_labels = classify_all(out_dir / "model-q8_0.gguf", task, test)
    cpu, cpu_labels = classify_all(version / "gguf_model" / "model-q8_0.gguf", task, test)
    return {**{k: trained[k] for k in ("gpu", "libraries", "config", "probes", "qlora", "cpu_lora")},
            "trained_at_commit": trained["commit"], "gpu_machine": trained["machine"],
            "test_rows": len(test), "qlora_gguf_q8_0": qlora, "cpu_lora_gguf_q8_0": cpu,
            "head_to_head": _head_to_head(test, qlora_labels, cpu_labels)}


def _head_to_head(test: list[dict], qlora: dict, cpu: dict) -> dict:
    from factory.lib.metrics import mcnemar

    paired = mcnemar([r["target"] for r in test], [qlora[r["id"]] for r in test], [cpu[r["id"]] for r in test])
    return {"finetuned": "qlora_gguf_q8_0", "baseline": "cpu_lora_gguf_q8_0", "rows": paired["rows"],
            "only_finetuned_right": paired["only_first_right"], "only_baseline_right": paired["only_second_right"],
            "mcnemar_exact_p": paired["p_value"]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    packing = sub.add_parser("pack")
    packing.add_argument("--version", required=True)
    packing.add_argument("--task", required=True)
    packing.add_argument("--base-model", default="smollm2-135m", help="packaged name or .gguf file")
    packing.add_argument("--carry", default=".devcarry", help="git-ignored folder the device calls carry")
    for name in ("train", "score"):
        step = sub.add_parser(name)
        step.add_argument("--version", required=True, help="a CPU run's version folder: its _configs/sft.json and splits")
        step.add_argument("--task", required=True, help="that run's task folder")
        step.add_argument("--name", default="qlora_cuda_train" if name == "train" else "qlora_cuda")
        step.add_argument("--out", default=None, help="results folder (train: also the adapter's; score: default bench/results)")
    train_args = sub.choices["train"]
    train_args.add_argument("--base-model", required=True, help="packaged name, .gguf file or Hugging Face folder")
    train_args.add_argument("--probe-steps", type=int, default=60, help="steps of each probe (the median step is what counts)")
    train_args.add_argument("--probe-variants", nargs="*", default=[], choices=[v for v in PROBE_VARIANTS if v != "recipe"],
                            help="also probe the recipe with these changed")
    train_args.add_argument("--budget-seconds", type=float, default=3600, help="train only if the whole recipe fits in this")
    sub.choices["score"].add_argument("--adapter", required=True, help="the adapter train wrote (<out>/run/adapter)")
    sub.choices["score"].add_argument("--train-result", required=True, help="the JSON train wrote")
    args = parser.parse_args(argv)
    if args.command == "pack":
        return pack(args)
    payload = train(args) if args.command == "train" else score(args)
    write_result(args.name, payload, args.out)
    return payload


if __name__ == "__main__":
    main()
