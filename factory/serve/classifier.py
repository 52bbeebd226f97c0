"""The factory's classify path: a GGUF through llama.cpp, decoding constrained to the contract.

A GBNF grammar over the label set makes an invalid label impossible, the prompt is rendered
with the GGUF's own template (as in the parity check), and llama.cpp keeps the shared prompt
prefix (system prompt, template) in its KV cache between requests.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

from factory.lib.task import TaskSpec
from factory.training.parity import gguf_prompt_ids


def label_grammar(labels: list[str]) -> str:
    """GBNF accepting exactly one label; llama.cpp grammars are the well-kept way to constrain decoding."""
    return "root ::= " + " | ".join(json.dumps(label) for label in sorted(labels))


@dataclass
class Classification:
    label: str | None
    answer: str
    latency_ms: float


class GGUFClassifier:
    def __init__(self, gguf_path: str, task: TaskSpec, threads: int = 0, n_ctx: int = 2048, constrained: bool = True):
        from llama_cpp import Llama, LlamaGrammar

        contract = task.build_contract()
        labels = getattr(contract, "labels", None)
        if constrained and not labels:
            raise ValueError(f"task {task.name}: constrained classification needs a classification contract")
        threads = threads or (os.cpu_count() or 1)
        self.task, self.contract = task, contract
        self.llm = Llama(model_path=gguf_path, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, seed=0, verbose=False)
        self.grammar = LlamaGrammar.from_string(label_grammar(list(labels)), verbose=False) if constrained else None
        self.max_tokens = max(len(self.llm.tokenize(label.encode(), add_bos=False)) for label in labels) + 1 if labels else 512

    def classify(self, text: str) -> Classification:
        started = time.perf_counter()
        prompt = gguf_prompt_ids(self.llm, self.task.messages(text))
        out = self.llm.create_completion(prompt=prompt, max_tokens=self.max_tokens, temperature=0.0, grammar=self.grammar)
        answer = out["choices"][0]["text"]
        return Classification(self.contract.parse_answer(answer), answer, (time.perf_counter() - started) * 1000)
