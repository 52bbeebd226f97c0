"""Load what training wrote: a LoRA adapter over the base model, or full fine-tuned weights."""
from __future__ import annotations

from pathlib import Path


def is_adapter(weights_dir: str | Path) -> bool:
    return (Path(weights_dir) / "adapter_config.json").exists()


def load_finetuned(base_model_dir: str, weights_dir: str | None):
    """A plain transformers model: the base with the adapter merged in, the full weights, or the base alone."""
    import torch
    from transformers import AutoModelForCausalLM

    if weights_dir and not is_adapter(weights_dir):
        return AutoModelForCausalLM.from_pretrained(weights_dir, dtype=torch.float32)
    model = AutoModelForCausalLM.from_pretrained(base_model_dir, dtype=torch.float32)
    if weights_dir:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, weights_dir).merge_and_unload()
    return model
