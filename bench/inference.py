"""Question 2: inference speed of the factory's classify path against what a user would run instead.

    .venv/bin/python bench/inference.py --version-dir data/versions/support_email.v1 --rows 200

On the same GGUF and the same test messages: the factory's classify path (grammar-constrained,
template from the GGUF, prompt prefix cached), llama-cpp-python's plain chat completion, and
transformers `generate` on the fine-tune before export. Concurrency N runs N worker processes,
each with its own model and cores/N threads; requests per second = messages / wall time.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import write_result  # noqa: E402

from factory.lib.metrics import latency_summary  # noqa: E402

_worker = None


def _init(path: str, spec: dict):
    global _worker
    from factory.lib.task import load_task

    task = load_task(spec["task_dir"])
    threads = spec["threads"]
    if path == "factory_classify":
        from factory.runtime.classifier import GGUFClassifier

        classifier = GGUFClassifier(spec["gguf"], task, threads=threads)
        _worker = lambda text: classifier.classify(text).answer  # noqa: E731
    elif path == "llama_cpp_chat":
        from factory.training.evaluate import GGUFModel

        model = GGUFModel(spec["gguf"], 2048, threads)
        _worker = lambda text: model.answer(task.messages(text), 16)  # noqa: E731
    elif path == "transformers_generate":
        from factory.training.evaluate import HFModel

        model = HFModel(spec["hf_model"], spec["adapter"], threads)
        _worker = lambda text: model.answer(task.messages(text), 16)  # noqa: E731
    _worker("warm-up message")


def _answer(text: str) -> tuple[str, float]:
    started = time.perf_counter()
    answer = _worker(text)
    return answer, (time.perf_counter() - started) * 1000


def measure(path: str, spec: dict, texts: list[str], concurrency: int) -> dict:
    spec = {**spec, "threads": max(1, (os.cpu_count() or 1) // concurrency)}
    with mp.get_context("spawn").Pool(concurrency, initializer=_init, initargs=(path, spec)) as pool:
        pool.map(time.sleep, [0.0] * concurrency)  # every worker has loaded its model
        started = time.perf_counter()
        results = pool.map(_answer, texts, chunksize=1)
        wall = time.perf_counter() - started
        # Let workers exit on their own: leaving the block sends SIGTERM, which a worker once ignored (hung here).
        pool.close()
        pool.join()
    return {"answers": [a for a, _ in results], "requests_per_second": len(texts) / wall,
            **latency_summary([ms for _, ms in results])}


def llama_cpp_build() -> dict:
    """Which llama.cpp build ran: a native build and the portable one differ in speed, not in results."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode()  # "CPU : SSE3 = 1 | AVX2 = 1 | ..."
    return {"version": llama_cpp.__version__, "cpu_features": sorted(re.findall(r"(\w+) = 1", info))}


def classify_breakdown(spec: dict, texts: list[str]) -> dict:
    """Where a classify request's time goes, in this process with every core: the prompt's new tokens (after the
    cached prefix) in one batch, then one forward pass per point where the remaining labels branch, as the runtime
    reports them on each answer."""
    from factory.lib.task import load_task
    from factory.runtime.classifier import GGUFClassifier

    classifier = GGUFClassifier(spec["gguf"], load_task(spec["task_dir"]))  # every core by default
    classifier.classify("warm-up message")
    results = [classifier.classify(text) for text in texts]
    branching = [r.label_ms / r.label_passes for r in results if r.label_passes]
    return {"prompt_ms_p50": statistics.median(r.latency_ms - r.label_ms for r in results),
            "prompt_tokens_mean": statistics.fmean(r.prompt_tokens for r in results),
            "new_prompt_tokens_mean": statistics.fmean(r.new_prompt_tokens for r in results),
            "label_ms_mean": statistics.fmean(r.label_ms for r in results),
            "label_passes_mean": statistics.fmean(r.label_passes for r in results),
            "ms_per_label_pass_p50": statistics.median(branching) if branching else None}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version-dir", required=True, help="data/versions/<task>.v<n> with gguf_model/ and lora_adapter/")
    parser.add_argument("--task-dir", help="defaults to data/tasks/<task> beside the versions folder")
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--concurrency", default="1,4")
    parser.add_argument("--paths", default="factory_classify,llama_cpp_chat,transformers_generate")
    parser.add_argument("--name", default="inference")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    from factory.lib.examples import load_examples
    from factory.lib.files import sample_rows
    from factory.lib.task import load_task

    version = Path(args.version_dir).resolve()
    task_name = version.name.rsplit(".v", 1)[0]
    task_dir = Path(args.task_dir) if args.task_dir else version.parents[1] / "tasks" / task_name
    task = load_task(task_dir)
    contract = task.build_contract()
    rows = sample_rows(load_examples(task.path("test"), contract, "test"), args.rows)
    texts = [r["text"] for r in rows]
    from factory.training.export_gguf import primary_gguf

    gguf_summary = json.loads((version / "gguf_model" / "summary.json").read_text())
    gguf = str(primary_gguf(version / "gguf_model")[2])
    spec = {"task_dir": str(task_dir), "gguf": gguf, "hf_model": gguf_summary["base_model_dir"],
            "adapter": str(version / "lora_adapter" / "adapter")}
    results = {}
    for path in args.paths.split(","):
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            measured = measure(path, spec, texts, concurrency)
            predictions = [contract.parse_answer(a) for a in measured.pop("answers")]
            measured.update(contract.metrics([r["target"] for r in rows], predictions))
            results[f"{path}@{concurrency}"] = measured
            print(path, concurrency, {k: round(v, 3) for k, v in measured.items()}, flush=True)
    base = results.get("llama_cpp_chat@1")
    ratios = {}
    if base and "factory_classify@1" in results:
        ratios["classify_vs_chat_latency_p50"] = results["factory_classify@1"]["latency_p50_ms"] / base["latency_p50_ms"]
    if "transformers_generate@1" in results and "factory_classify@1" in results:
        ratios["classify_vs_transformers_latency_p50"] = (results["factory_classify@1"]["latency_p50_ms"]
                                                          / results["transformers_generate@1"]["latency_p50_ms"])
    payload = {"task": task_name, "gguf": gguf, "rows": len(rows), "results": results, "ratios": ratios,
               "llama_cpp": llama_cpp_build()}
    if "factory_classify" in args.paths.split(","):
        payload["classify_breakdown"] = breakdown = classify_breakdown(spec, texts)
        if base:  # the ratio the classify path would reach if choosing the label cost nothing
            ratios["prompt_only_vs_chat_latency_p50"] = breakdown["prompt_ms_p50"] / base["latency_p50_ms"]
        print("classify breakdown", {k: round(v, 2) for k, v in breakdown.items() if v is not None}, flush=True)
    write_result(args.name, payload, args.out)
    return payload


if __name__ == "__main__":
    main()
