"""Score a model on eval sets with greedy decoding, through llama.cpp (GGUF) or transformers (HF folder).

    python -m factory.training.evaluate --config eval.json

The GGUF path formats prompts with the chat template embedded in the file, as a user's
runtime would, so a template or end-of-turn token lost in export shows up here.
"""
from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from factory.lib.files import atomic_dir, peak_rss_mib, read_jsonl, sample_rows, write_json, write_jsonl
from factory.lib.task import load_task
from factory.training.weights import load_finetuned


@dataclass
class EvalConfig:
    model: str = field(metadata={"help": "a .gguf file (llama.cpp) or a Hugging Face folder (transformers)"})
    task_dir: str = field(metadata={"help": "task folder: prompt and contract"})
    eval_files: dict[str, str] = field(metadata={"help": "eval set name -> JSONL with id, text, target"})
    output_dir: str = field(metadata={"help": "written atomically: predictions-<set>.jsonl, summary.json"})
    adapter_dir: str | None = field(default=None, metadata={"help": "HF only: LoRA adapter applied on top of model, or full fine-tuned weights used instead"})
    limit: int = field(default=0, metadata={"help": "score N rows of each set drawn with a fixed seed (0: all)"})
    threads: int = field(default=0, metadata={"help": "CPU threads (0: all cores)"})
    n_ctx: int = field(default=2048, metadata={"help": "llama.cpp context window"})


class GGUFModel:
    def __init__(self, path: str, n_ctx: int, threads: int):
        from llama_cpp import Llama

        self.llm = Llama(model_path=path, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, seed=0, verbose=False)

    def token_count(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode(), add_bos=False))

    def answer(self, messages: list[dict], max_tokens: int) -> str:
        out = self.llm.create_chat_completion(messages=messages, temperature=0.0, max_tokens=max_tokens)
        return out["choices"][0]["message"]["content"] or ""


class HFModel:
    def __init__(self, path: str, adapter_dir: str | None, threads: int):
        import torch
        from transformers import AutoTokenizer

        torch.set_num_threads(threads)
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(adapter_dir or path)
        self.model = load_finetuned(path, adapter_dir).eval()

    def token_count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def answer(self, messages: list[dict], max_tokens: int) -> str:
        inputs = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with self.torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=max_tokens, do_sample=False,
                                      pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
        return self.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def load_model(config: EvalConfig, threads: int):
    if config.model.endswith(".gguf"):
        return GGUFModel(config.model, config.n_ctx, threads)
    return HFModel(config.model, config.adapter_dir, threads)


def main(config: EvalConfig, log: Callable[[str], None] = print) -> dict:
    """Answer every eval row greedily and score the answers under the task's contract."""
    task = load_task(config.task_dir)
    contract = task.build_contract()
    threads = config.threads or (os.cpu_count() or 1)
    model = load_model(config, threads)
    labels = getattr(contract, "labels", None)
    # Room for the longest valid answer and its end-of-turn token, and no more: a rambling model stops early.
    max_tokens = max(model.token_count(contract.render(label)) for label in labels) + 2 if labels else 512
    metrics: dict[str, dict] = {}
    with atomic_dir(config.output_dir) as scratch:
        for name, path in sorted(config.eval_files.items()):
            rows = read_jsonl(path)
            rows = sample_rows(rows, config.limit)
            if not rows:
                continue
            predictions, latencies = [], []
            for row in rows:
                started = time.perf_counter()
                answer = model.answer(task.messages(row["text"]), max_tokens)
                latencies.append((time.perf_counter() - started) * 1000)
                predictions.append({"id": row["id"], "target": row["target"], "answer": answer,
                                    "prediction": contract.parse_answer(answer), "latency_ms": latencies[-1]})
            scores = contract.metrics([p["target"] for p in predictions], [p["prediction"] for p in predictions])
            scores.update(rows=len(rows), latency_p50_ms=statistics.median(latencies),
                          latency_p95_ms=sorted(latencies)[max(0, round(0.95 * len(latencies)) - 1)])
            metrics[name] = scores
            write_jsonl(scratch / f"predictions-{name}.jsonl", predictions)
            log(f"{name}: " + ", ".join(f"{k}={v:.3f}" for k, v in scores.items() if isinstance(v, float)))
        write_json(scratch / "summary.json", {"model": config.model, "adapter_dir": config.adapter_dir, "sets": metrics,
                                               "peak_rss_mib": peak_rss_mib()})
    return {"sets": metrics}


if __name__ == "__main__":
    from factory.training.cli import run

    run(main, EvalConfig)
