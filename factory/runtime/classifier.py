"""The classify path: a GGUF through llama.cpp, decoding constrained to the label set, with a confidence.

The prompt is rendered with the GGUF's own template (as in the parity check) and llama.cpp
keeps the longest shared prompt prefix (system prompt, template) in its KV cache between
requests. Decoding walks a trie of the labels' token sequences: at each step the most likely
token among those that continue some label is taken, which is greedy decoding restricted to the
labels as the fine-tune saw them tokenized (a llama.cpp grammar over characters also admits other
splits of a label into tokens), and it stops as soon as one label remains. Tokens that every remaining
label shares (the `_` after `card` in `card_arrival`, `card_linking`) need no choice, so they are
evaluated in one batch with the chosen token: a forward pass is spent only where labels branch.
Labels with distinct first tokens cost one forward pass over the new part of the prompt.

Confidence comes from the same forward passes: at each branch the softmax over the tokens that
continue some label splits the probability mass between the branches. The chosen label keeps the
product along its path; a branch not taken passes its mass to its labels in equal shares (no
forward pass was spent to tell them apart), so the probabilities over the labels sum to 1.
"""
from __future__ import annotations

import ctypes
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from factory.lib.hardware import usable_cores
from factory.lib.task import TaskSpec
from factory.runtime.prompt import GGUFPrompt


class PromptTooLong(ValueError):
    """A text whose prompt does not fit the model's context (characters are cut by `max_input_chars`, tokens are not)."""


@dataclass
class Classification:
    label: str | None
    answer: str
    latency_ms: float
    confidence: float = 1.0
    abstained: bool = False
    probabilities: dict[str, float] = field(default_factory=dict)  # label -> probability (constrained path only)
    # Where the time went: the prompt's tokens, those evaluated after the cached prefix, then the label's forward passes.
    prompt_tokens: int = 0
    new_prompt_tokens: int = 0
    label_passes: int = 0
    label_ms: float = 0.0


class GGUFClassifier:
    def __init__(self, gguf_path: str, task: TaskSpec, threads: int = 0, n_ctx: int = 2048, constrained: bool = True):
        from llama_cpp import Llama

        contract = task.build_contract()
        labels = getattr(contract, "labels", None)
        if not labels:
            raise ValueError(f"task {task.name}: the classify path needs a classification contract")
        threads = threads or usable_cores()
        self.gguf_path, self.task, self.contract, self.constrained = gguf_path, task, contract, constrained
        # Flash attention (off by default in llama-cpp-python): ~10% lower latency on 2 CPU cores, the same labels
        # on 200 Banking77 messages.
        self.llm = Llama(model_path=gguf_path, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, seed=0,
                         flash_attn=True, verbose=False)
        eos = self.llm.token_eos()
        # Keyed by the answer the model writes, which the contract maps back to its label.
        answers = sorted(contract.render(label) for label in labels)
        self.sequences = {answer: tuple(self.llm.tokenize(answer.encode(), add_bos=False, special=False)) + (eos,)
                          for answer in answers}
        self.max_tokens = max(len(s) for s in self.sequences.values())
        self.prompt = GGUFPrompt(self.llm)
        # What every task prompt shares before the input (template, system prompt) is evaluated once, on its own,
        # and kept; each request evaluates the rest in one batch. Reusing whatever the previous prompt happened to
        # share would make a row's confidence depend on the row before it (float rounding differs with the batch).
        one, other = self.prompt.ids(task.messages("a")), self.prompt.ids(task.messages("b"))
        self.prefix = next(n for n, (a, b) in enumerate(zip(one + [-1], other + [-2])) if a != b)
        self._shared_prefix = one[: self.prefix]
        self.llm.eval(self._shared_prefix)
        # One llama.cpp context is not thread-safe; a server shares one classifier between request threads.
        self.lock = threading.Lock()

    def _eval_prompt(self, ids: list[int]) -> int:
        """Evaluate the prompt past the shared prefix (or, for other prompts such as few-shot ones, past what the cache
        holds), keeping at least the last token for fresh logits; returns how many tokens were evaluated."""
        cached = list(self.llm.input_ids[: self.llm.n_tokens])
        task_prompt = len(ids) > self.prefix and ids[: self.prefix] == self._shared_prefix
        if task_prompt:
            if cached[: self.prefix] != ids[: self.prefix]:  # a prompt of another kind ran in between
                self.llm.n_tokens = 0
                self.llm.eval(ids[: self.prefix])
            keep = self.prefix
        else:
            keep = 0
            for a, b in zip(cached, ids[:-1]):
                if a != b:
                    break
                keep += 1
        self.llm.n_tokens = keep
        self.llm.eval(ids[keep:])
        return len(ids) - keep

    def _next_logits(self) -> np.ndarray:
        import llama_cpp

        pointer = llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=(self.llm.n_vocab(),))

    def _constrained(self) -> tuple[str, dict[str, float], int]:
        """The answer, each label's probability, and the forward passes spent after the prompt's."""
        candidates = dict(self.sequences)
        probabilities = dict.fromkeys(self.sequences, 0.0)
        path_mass, depth, passes = 1.0, 0, 0
        while len(candidates) > 1:
            logits = self._next_logits()
            branches: dict[int, list[str]] = {}
            for answer, seq in candidates.items():
                branches.setdefault(seq[depth] if len(seq) > depth else -1, []).append(answer)
            tokens = [t for t in branches if t >= 0]
            scores = np.array([logits[t] for t in tokens], dtype=np.float64)
            shares = np.exp(scores - scores.max())
            shares /= shares.sum()
            best = tokens[int(np.argmax(scores))]
            for token, share in zip(tokens, shares):
                if token != best:
                    for answer in branches[token]:
                        probabilities[answer] = path_mass * float(share) / len(branches[token])
            path_mass *= float(shares[tokens.index(best)])
            candidates = {answer: candidates[answer] for answer in branches[best]}
            start, depth = depth, depth + 1
            if len(candidates) > 1:
                while all(len(seq) > depth for seq in candidates.values()) and len({seq[depth] for seq in candidates.values()}) == 1:
                    depth += 1  # forced: every remaining label continues with this token
                self.llm.eval(list(next(iter(candidates.values()))[start:depth]))
                passes += 1
        answer = next(iter(candidates))
        probabilities[answer] = path_mass
        return answer, {self.contract.parse_answer(a): p for a, p in probabilities.items()}, passes

    def _free(self) -> str:
        eos, tokens = self.llm.token_eos(), []
        for _ in range(self.max_tokens):
            token = int(np.argmax(self._next_logits()))
            if token == eos:
                break
            tokens.append(token)
            self.llm.eval([token])
        return self.llm.detokenize(tokens).decode("utf-8", "replace")

    def classify(self, text: str, messages: list[dict] | None = None) -> Classification:
        """One text through the task's prompt (or the given messages); below the task's `abstain_below` confidence
        the answer becomes its `fallback_label`, marked abstained."""
        with self.lock:
            started = time.perf_counter()
            ids = self.prompt.ids(messages or self.task.messages(text))
            if len(ids) > self.llm.n_ctx():
                raise PromptTooLong(f"the text makes a prompt of {len(ids)} tokens, over the model's context of "
                                    f"{self.llm.n_ctx()}; lower max_input_chars in task.yaml")
            new_tokens = self._eval_prompt(ids)
            if not self.constrained:
                answer = self._free()
                return Classification(self.contract.parse_answer(answer), answer, (time.perf_counter() - started) * 1000,
                                      prompt_tokens=len(ids), new_prompt_tokens=new_tokens)
            label_started = time.perf_counter()
            answer, probabilities, passes = self._constrained()
            finished = time.perf_counter()
        label = self.contract.parse_answer(answer)
        confidence = probabilities[label]
        abstained = bool(self.task.fallback_label) and confidence < self.task.abstain_below
        return Classification(self.task.fallback_label if abstained else label, answer, (finished - started) * 1000,
                              confidence, abstained, probabilities, len(ids), new_tokens, passes,
                              (finished - label_started) * 1000)
