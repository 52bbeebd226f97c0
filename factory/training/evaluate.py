"""Score a model on eval sets: a GGUF through the served path (the product runtime), or greedy free generation
through llama.cpp (GGUF) or transformers (HF folder).

    python -m factory.training.evaluate --config eval.json

The served path is what `factory serve` and `factory classify` answer with: labels constrained by the trie,
a confidence per answer. Free generation formats prompts with the chat template embedded in the file, as a
user's own runtime would, so a template or end-of-turn token lost in export shows up there.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from factory.lib.files import atomic_dir, peak_rss_mib, read_jsonl, sample_rows, write_json, write_jsonl
from factory.lib.hardware import usable_cores
from factory.lib.metrics import score_predictions
from factory.lib.prompts import chat_messages
from factory.lib.task import load_task
from factory.training.weights import load_finetuned


@dataclass
class EvalConfig:
    model: str = field(metadata={"help": "a .gguf file (llama.cpp), a Hugging Face folder (transformers) or an "
                                        "encoder classifier's folder (encoder.json)"})
    task_dir: str = field(metadata={"help": "task folder: prompt and contract"})
    eval_files: dict[str, str] = field(metadata={"help": "eval set name -> JSONL with id, text, target"})
    output_dir: str = field(metadata={"help": "written atomically: predictions-<set>.jsonl, summary.json"})
    adapter_dir: str | None = field(default=None, metadata={"help": "HF only: LoRA adapter applied on top of model, or full fine-tuned weights used instead"})
    decoding: str = field(default="served", metadata={
        "help": "'served': the runtime's label-constrained path with confidences (GGUF, classification); 'free': greedy generation"})
    system_prompt: str | None = field(default=None, metadata={"help": "replaces the task's prompt (baselines); a row's own "
                                                                       "'system_prompt' field wins over both"})
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


class ServedModel:
    """The product runtime: what a served request gets."""

    def __init__(self, path: str, task, n_ctx: int, threads: int):
        from factory.runtime.encoder import released_classifier

        self.classifier = released_classifier(path, task, threads, n_ctx)

    def predict(self, messages: list[dict]) -> dict:
        result = self.classifier.classify("", messages=messages)
        return {"answer": result.answer, "prediction": result.label, "confidence": result.confidence,
                "abstained": result.abstained}


class GeneratingModel:
    def __init__(self, model, contract, max_tokens: int):
        self.model, self.contract, self.max_tokens = model, contract, max_tokens

    def predict(self, messages: list[dict]) -> dict:
        answer = self.model.answer(messages, self.max_tokens)
        return {"answer": answer, "prediction": self.contract.parse_answer(answer)}


def load_model(config: EvalConfig, task, threads: int):
    from factory.runtime.encoder import is_encoder

    contract = task.build_contract()
    labels = getattr(contract, "labels", None)
    if config.decoding not in ("served", "free"):
        raise ValueError(f"decoding must be 'served' or 'free', got {config.decoding!r}")
    gguf = config.model.endswith(".gguf")
    if is_encoder(config.model):
        if config.decoding != "served" or not labels:
            raise ValueError(f"{config.model} is an encoder classifier: it has only the served path of a classification task")
        return ServedModel(config.model, task, config.n_ctx, threads)
    if config.decoding == "served" and gguf and labels:
        return ServedModel(config.model, task, config.n_ctx, threads)
    model = GGUFModel(config.model, config.n_ctx, threads) if gguf else HFModel(config.model, config.adapter_dir, threads)
    # Room for the longest valid answer and its end-of-turn token, and no more: a rambling model stops early.
    max_tokens = max(model.token_count(contract.render(label)) for label in labels) + 2 if labels else 512
    return GeneratingModel(model, contract, max_tokens)


def main(config: EvalConfig, log: Callable[[str], None] = print) -> dict:
    """Answer every eval row and score the answers under the task's contract."""
    task = load_task(config.task_dir)
    contract = task.build_contract()
    threads = config.threads or usable_cores()
    model = load_model(config, task, threads)
    prompt = config.system_prompt or task.system_prompt
    metrics: dict[str, dict] = {}
    with atomic_dir(config.output_dir) as scratch:
        for name, path in sorted(config.eval_files.items()):
            rows = sample_rows(read_jsonl(path), config.limit)
            if not rows:
                continue
            predictions = []
            wall, cpu = time.perf_counter(), time.process_time()
            for row in rows:
                started = time.perf_counter()
                answer = model.predict(chat_messages(row.get("system_prompt") or prompt, row["text"], task.max_input_chars))
                predictions.append({"id": row["id"], "target": row["target"], **answer,
                                    "latency_ms": (time.perf_counter() - started) * 1000})
            scores = score_predictions(predictions, contract, time.perf_counter() - wall, time.process_time() - cpu)
            metrics[name] = scores
            write_jsonl(scratch / f"predictions-{name}.jsonl", predictions)
            log(f"{name}: " + ", ".join(f"{k}={v:.3f}" for k, v in scores.items() if isinstance(v, float)))
        for scores in metrics.values():
            scores["peak_rss_mib"] = peak_rss_mib()  # the whole scoring process: model, context and inputs
        write_json(scratch / "summary.json", {"model": config.model, "adapter_dir": config.adapter_dir, "sets": metrics,
                                               "decoding": config.decoding, "peak_rss_mib": peak_rss_mib()})
    return {"sets": metrics}


if __name__ == "__main__":
    from factory.training.cli import run

    run(main, EvalConfig)
