"""The non-generative candidate: sentence embeddings + logistic regression, saved by `baseline_report` and released
only when it beats the fine-tune (the task opts in with `encoder_candidate`). Same answers as the GGUF classifier's:
a label, a confidence (the regression's probability), and the task's abstain rule."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from factory.lib.task import TaskSpec
from factory.runtime.classifier import Classification

MODEL_FILE, SPEC_FILE = "model.skops", "encoder.json"


def save_encoder(folder: Path, model, embedder: str) -> None:
    """The fitted regression (skops: loading it runs no pickled code) and the embedder that feeds it."""
    import skops.io

    folder.mkdir(parents=True, exist_ok=True)
    skops.io.dump(model, folder / MODEL_FILE)
    (folder / SPEC_FILE).write_text(json.dumps({"embedder": embedder, "labels": [str(c) for c in model.classes_]}),
                                    encoding="utf-8")


def is_encoder(path: str | Path) -> bool:
    return (Path(path) / SPEC_FILE).is_file()


class EncoderClassifier:
    def __init__(self, folder: str | Path, task: TaskSpec, threads: int = 0):
        import skops.io
        import torch

        from factory.integrations.resources import Embedder

        folder = Path(folder)
        spec = json.loads((folder / SPEC_FILE).read_text(encoding="utf-8"))
        self.model = skops.io.load(folder / MODEL_FILE, trusted=skops.io.get_untrusted_types(file=folder / MODEL_FILE))
        unknown = set(spec["labels"]) - set(task.contract.labels or {})
        if unknown:
            raise ValueError(f"{folder}: the encoder answers labels the task does not have: {sorted(unknown)}")
        if threads:
            torch.set_num_threads(threads)
        self.embedder = Embedder(model=spec["embedder"])
        self.encoder = self.embedder.load()
        self.embedder.encode(["warm-up"], self.encoder)  # torch's first call is slow; no request should pay for it
        self.task, self.lock = task, threading.Lock()

    def classify(self, text: str, messages: list[dict] | None = None) -> Classification:
        if messages is not None:  # the user's turn is the input; the prompt around it is for generative models
            text = next(m["content"] for m in reversed(messages) if m["role"] == "user")
        started = time.perf_counter()
        with self.lock:
            row = self.model.predict_proba(self.embedder.encode([text], self.encoder))[0]
        probabilities = {str(label): float(p) for label, p in zip(self.model.classes_, row)}
        label = max(probabilities, key=probabilities.get)
        confidence = probabilities[label]
        abstained = bool(self.task.fallback_label) and confidence < self.task.abstain_below
        return Classification(self.task.fallback_label if abstained else label, label,
                              (time.perf_counter() - started) * 1000, confidence, abstained, probabilities)


def released_classifier(path: str | Path, task: TaskSpec, threads: int = 0, n_ctx: int = 2048):
    """The model at `path`, a GGUF or an encoder folder, behind one `classify`."""
    if is_encoder(path):
        return EncoderClassifier(path, task, threads)
    from factory.runtime.classifier import GGUFClassifier

    return GGUFClassifier(str(path), task, threads=threads, n_ctx=n_ctx)
