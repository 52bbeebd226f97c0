"""Supervised fine-tuning with TRL, loss on the answer only: a LoRA adapter (QLoRA on CUDA) or all weights.

    python -m factory.training.sft --config sft.json
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from factory.lib.errors import DataError
from factory.lib.files import atomic_dir, peak_rss_mib, read_jsonl, sha256_file, write_json
from factory.lib.hardware import usable_cores
from factory.lib.task import load_task
from factory.training.distill import SOFT_TARGETS, distilling, label_first_tokens, read_soft_targets

# A LoRA adapter's AdamW state is small, so plain AdamW is the default: paged 8-bit AdamW took 0.90 s a step against
# 0.63 for QLoRA on SmolLM2-135M on an H200 (bench/LOG.md, "QLoRA on a GPU"); a choice for large models on small GPUs.
OPTIMIZERS = ("adamw_torch", "adamw_8bit", "paged_adamw_8bit")


@dataclass
class SFTRunConfig:
    base_model_dir: str = field(metadata={"help": "local Hugging Face folder of the base model"})
    task_dir: str = field(metadata={"help": "task folder: its system prompt and contract shape the records"})
    train_file: str = field(metadata={"help": "JSONL of rows with text and target, split == train"})
    output_dir: str = field(metadata={"help": "written atomically: adapter/ (the LoRA adapter, or the full weights), summary.json"})
    validation_file: str | None = field(default=None, metadata={"help": "JSONL for eval loss each epoch"})
    method: str = field(default="lora", metadata={"help": "'lora' trains an adapter; 'full' trains every weight (no QLoRA)"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator"})
    lora_dropout: float = field(default=0.0, metadata={"help": "dropout on LoRA inputs; costly on CPU"})
    target_modules: str = field(default="all-linear", metadata={"help": "modules that get adapters"})
    learning_rate: float = field(default=2e-4, metadata={"help": "peak learning rate"})
    num_train_epochs: float = field(default=1.0, metadata={"help": "passes over the train rows"})
    max_steps: int = field(default=-1, metadata={"help": "stop after this many optimizer steps (-1: epochs decide)"})
    per_device_train_batch_size: int = field(default=8, metadata={"help": "rows per step per device"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "steps summed per optimizer update"})
    warmup_ratio: float = field(default=0.05, metadata={"help": "share of steps spent warming up"})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "learning-rate schedule"})
    max_length: int = field(default=1024, metadata={"help": "token cap; inputs are cut by max_input_chars first"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "trade compute for memory (worth it on small GPUs)"})
    group_by_length: bool = field(default=True, metadata={"help": "batch rows of similar length: less padding"})
    quantization: str = field(default="auto", metadata={"help": "'nf4' (QLoRA), 'none', or 'auto': nf4 on CUDA only"})
    optimizer: str = field(default="adamw_torch", metadata={
        "help": f"one of {', '.join(OPTIMIZERS)}; the 8-bit ones are bitsandbytes', 'paged' spills state to host memory"})
    precision: str = field(default="auto", metadata={
        "help": "'bf16' mixed precision, 'fp32', or 'auto': bf16 on CUDA and on CPUs with AVX512-BF16 or AMX, else fp32"})
    dev_file: str | None = field(default=None, metadata={
        "help": "JSONL scored through the label-constrained path at each evaluation: the best checkpoint by dev macro-F1 is kept"})
    eval_steps: int = field(default=0, metadata={"help": "evaluate and checkpoint every N steps (0: every epoch)"})
    early_stopping_patience: int = field(default=0, metadata={
        "help": "stop after this many evaluations without a better dev macro-F1 (0: train to the end, still keep the best)"})
    resume: bool = field(default=True, metadata={
        "help": "continue a killed run from its last checkpoint when the config and the data are unchanged"})
    neftune_noise_alpha: float = field(default=0.0, metadata={
        "help": "NEFTune: uniform noise of this scale on the input embeddings while training (0: off; the paper used 5)"})
    distill_weight: float = field(default=0.0, metadata={
        "help": "share of the loss spent matching the embedding classifier's label probabilities at the answer's first "
                "token (soft_targets_file; 0: off)"})
    soft_targets_file: str | None = field(default=None, metadata={
        "help": "JSONL of {id, probabilities} for the train rows (written by the lora_adapter asset when distilling)"})
    seed: int = field(default=0, metadata={"help": "seeds data order, dropout and adapter init"})
    logging_steps: int = field(default=5, metadata={"help": "log the loss every N steps"})

    def __post_init__(self):
        # Checked when the config is built, so the asset refuses a bad recipe before launching training.
        if self.method not in ("lora", "full"):
            raise ValueError(f"method must be 'lora' or 'full', got {self.method!r}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision must be 'auto', 'bf16' or 'fp32', got {self.precision!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if not 0.0 <= self.distill_weight < 1.0:
            raise ValueError(f"distill_weight must be in [0, 1), got {self.distill_weight}")
        if self.distill_weight and not self.soft_targets_file:
            raise ValueError("distill_weight needs soft_targets_file (the lora_adapter asset writes it)")
        if self.method == "full" and self.quantization == "nf4":
            raise ValueError("quantization 'nf4' needs method 'lora': 4-bit weights cannot be trained directly")


def cpu_runs_bf16() -> bool:
    """Whether this CPU has bf16 instructions. Without them oneDNN emulates bf16; unmeasured, so fp32 stays there."""
    import torch

    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def resolve_precision(precision: str, cuda: bool, cpu_bf16: bool) -> str:
    """'auto' picks bf16 where the hardware has it: on an AVX512-BF16 CPU 1.5x faster steps at no accuracy cost
    (bench/LOG.md: 0.921 against fp32's 0.918 on all Banking77 rows)."""
    if precision != "auto":
        return precision
    return "bf16" if cuda or cpu_bf16 else "fp32"


def _records(path: str, task, tokenizer, soft_targets: dict[str, list[float]] | None = None) -> list[dict]:
    """Rows tokenized here rather than by TRL: the prompt as the chat template renders it for generation, then the
    answer and the end-of-turn token, the only supervised positions. TRL's own prompt-completion tokenization would
    also supervise what the template writes after the turn (ChatML's newline after <|im_end|>). With soft targets,
    each row carries its own (a row without one is an error, named)."""
    contract = task.build_contract()
    end_of_turn = tokenizer.convert_tokens_to_ids(tokenizer.eos_token)
    records = []
    for row in read_jsonl(path):
        prompt = tokenizer.apply_chat_template(task.messages(row["text"]), add_generation_prompt=True, tokenize=True,
                                               return_dict=True)["input_ids"]
        answer = tokenizer(contract.render(row["target"]), add_special_tokens=False)["input_ids"] + [end_of_turn]
        record = {"input_ids": list(prompt) + answer, "completion_mask": [0] * len(prompt) + [1] * len(answer)}
        if soft_targets is not None:
            if row["id"] not in soft_targets:
                raise DataError(path, f"row {row['id']!r} has no soft target", line=row["_line"])
            record[SOFT_TARGETS] = soft_targets[row["id"]]
        records.append(record)
    return records


@contextmanager
def lm_head_on_answer_tokens_only() -> Iterator[None]:
    """Project only the answer positions through the LM head on CPU as well.

    TRL's fused LM head skips the positions without a label on Triton devices only (fixed shapes suit other
    accelerators); on CPU it scores every prompt token too: steps 1.4x slower for SmolLM2, 2.3x for Gemma's 262k
    vocabulary on Banking77 (bench/training_step.py). Same loss either way.
    """
    import trl.trainer.utils as trl_utils

    uses_triton = getattr(trl_utils, "_use_triton", None)
    if uses_triton is None:  # a TRL without the switch: train as it decides (factory_tests/test_training.py notices)
        yield
        return
    trl_utils._use_triton = lambda device: device.type == "cpu" or uses_triton(device)
    try:
        yield
    finally:
        trl_utils._use_triton = uses_triton


def step_clock():
    """A trainer callback timing each optimizer step, so a short run's speed is not its warm-up (seconds on a GPU)."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self):
            self.ends: list[float] = []

        def on_step_end(self, args, state, control, **kwargs) -> None:
            self.ends.append(time.perf_counter())

        def median_seconds(self) -> float | None:
            gaps = [b - a for a, b in zip(self.ends, self.ends[1:])]
            return statistics.median(gaps) if gaps else None

    return StepClock()


def model_only_last_checkpoint():
    """A callback that saves the last step's checkpoint without optimizer state: nothing trains on from it (a resume
    there only loads the best model), and for every weight of a 135M model that state is 1 GB, 6.5 s to write here."""
    from transformers import TrainerCallback

    class ModelOnlyLastCheckpoint(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs) -> None:
            if state.global_step >= state.max_steps:  # called before the trainer saves this step
                args.save_only_model = True

    return ModelOnlyLastCheckpoint()


def checkpoint_dir(config: SFTRunConfig) -> Path:
    """Checkpoints beside the output, kept across a killed run; wiped when the config or the data changed since."""
    output = Path(config.output_dir)
    folder = output.with_name(f".checkpoints-{output.name}")
    digest = hashlib.sha256(json.dumps({k: v for k, v in asdict(config).items() if k != "resume"}, sort_keys=True).encode())
    for path in (config.train_file, config.validation_file, config.dev_file, config.soft_targets_file):
        if path and Path(path).exists():
            digest.update(sha256_file(path).encode())
    marker = folder / "fingerprint"
    if folder.exists() and (not marker.exists() or marker.read_text() != digest.hexdigest()):
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    marker.write_text(digest.hexdigest())
    return folder


def build_trainer(config: SFTRunConfig, checkpoints: Path, log: Callable[[str], None] = print):
    """The TRL trainer for a config, its checkpoints under `checkpoints`, and the step clock; tests read its batches."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, set_seed
    from trl import SFTConfig, SFTTrainer

    full = config.method == "full"
    set_seed(config.seed)
    cuda = torch.cuda.is_available()
    quantize = not full and (config.quantization == "nf4" or (config.quantization == "auto" and cuda))
    bf16 = resolve_precision(config.precision, cuda, cpu_runs_bf16()) == "bf16"
    task = load_task(config.task_dir)
    tokenizer = AutoTokenizer.from_pretrained(config.base_model_dir)
    soft = read_soft_targets(config.soft_targets_file, list(task.contract.labels)) if config.distill_weight else None
    distill = {"label_token_ids": label_first_tokens(tokenizer, task.build_contract()),
               "distill_weight": config.distill_weight} if config.distill_weight else {}
    train = Dataset.from_list(_records(config.train_file, task, tokenizer, soft))
    validation = Dataset.from_list(_records(config.validation_file, task, tokenizer)) if config.validation_file else None
    if validation is not None and len(validation) == 0:
        validation = None
    dev = read_jsonl(config.dev_file) if config.dev_file and getattr(task.contract, "labels", None) else []
    if validation is None and dev:
        validation = Dataset.from_list(_records(config.dev_file, task, tokenizer))  # evaluate() needs rows to take a loss on
    schedule = "steps" if config.eval_steps else "epoch"
    weights_dtype = torch.bfloat16 if cuda and bf16 else torch.float32  # on CPU, bf16 autocast over fp32 weights
    model_kwargs: dict = {"dtype": weights_dtype}
    if quantize:
        model_kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=weights_dtype,
        )
    model = AutoModelForCausalLM.from_pretrained(config.base_model_dir, **model_kwargs)
    if quantize:
        from peft import prepare_model_for_kbit_training

        # peft turns activation checkpointing on unless told; the recipe decides (on an H200: 0.63 s a step on, 0.42 off)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
    if not cuda:
        torch.set_num_threads(usable_cores())
    args = SFTConfig(
        output_dir=str(checkpoints),
        num_train_epochs=config.num_train_epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.per_device_train_batch_size,
        per_device_eval_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler_type,
        warmup_steps=config.warmup_ratio,
        max_length=config.max_length,
        activation_checkpointing=config.gradient_checkpointing,  # transformers 5 name; the recipe keeps its key
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        completion_only_loss=True,
        logging_steps=config.logging_steps,
        eval_strategy=schedule if validation is not None else "no",
        eval_steps=config.eval_steps or None,
        # Checkpoints at every evaluation: a killed run resumes from the last, the best is loaded at the end.
        save_strategy=schedule,
        save_steps=config.eval_steps or 500,
        save_total_limit=2,
        load_best_model_at_end=bool(dev),
        metric_for_best_model="dev_macro_f1" if dev else None,
        greater_is_better=True if dev else None,
        report_to="none",
        seed=config.seed,
        data_seed=config.seed,
        bf16=bf16,
        use_cpu=not cuda,
        optim=config.optimizer,
        neftune_noise_alpha=config.neftune_noise_alpha or None,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    peft_config = None if full else LoraConfig(
        r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=config.target_modules, task_type="CAUSAL_LM",
    )
    clock = step_clock()
    callbacks = [clock, model_only_last_checkpoint()]
    if dev:
        from transformers import EarlyStoppingCallback

        from factory.training.task_metric import DevMetric

        callbacks.append(DevMetric(task, dev, tokenizer))  # before early stopping, which reads what it adds
        if config.early_stopping_patience:
            callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience))
    trainer = (distilling(SFTTrainer) if distill else SFTTrainer)(
        model=model, args=args, train_dataset=train, eval_dataset=validation,
        processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks, **distill,
    )
    trainer.quantized = quantize
    return trainer, clock


def main(config: SFTRunConfig, log: Callable[[str], None] = print) -> dict:
    """Train a LoRA adapter (or every weight) on the task's chat-formatted rows and save it."""
    import torch

    cuda = torch.cuda.is_available()
    output = Path(config.output_dir)
    checkpoints = checkpoint_dir(config)
    # A checkpoint is complete once its trainer state is written (the last file saved); a kill may leave a partial one.
    complete = [p for p in checkpoints.glob("checkpoint-*") if (p / "trainer_state.json").exists()]
    resume_from = max(complete, key=lambda p: int(p.name.split("-")[1]), default=None)
    with atomic_dir(output) as scratch:
        trainer, clock = build_trainer(config, checkpoints, log)
        quantize, tokenizer, train = trainer.quantized, trainer.processing_class, trainer.train_dataset
        parameters = list(trainer.model.parameters())
        trainable = sum(p.numel() for p in parameters if p.requires_grad)
        total = sum(p.numel() for p in parameters)
        log(f"training {trainable:,} of {total:,} parameters on {len(train)} rows (quantization={'nf4' if quantize else 'none'})")
        started = time.perf_counter()
        if resume_from is not None and config.resume:
            log(f"resuming from {resume_from.name}: the last checkpoint of an interrupted run with this config and data")
        with lm_head_on_answer_tokens_only():
            result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from and config.resume else None)
        seconds = time.perf_counter() - started
        trainer.model.save_pretrained(scratch / "adapter")
        tokenizer.save_pretrained(scratch / "adapter")
        tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
        epochs = result.metrics.get("epoch", config.num_train_epochs)
        evals = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
        summary = {
            "train_rows": len(train),
            "train_loss": result.training_loss,
            "final_eval_loss": evals[-1] if evals else None,
            "train_seconds": seconds,
            "steps": trainer.state.global_step,
            "epochs": epochs,
            "tokens_per_second": tokens * epochs / seconds if seconds else math.nan,
            "seconds_per_step_median": clock.median_seconds(),
            "method": config.method,
            "trainable_parameters": trainable,
            "quantization": "nf4" if quantize else "none",
            # what the trainer ran, not what was asked
            "precision": "bf16" if trainer.args.bf16 else "fp32",
            "optimizer": str(getattr(trainer.args.optim, "value", trainer.args.optim)),
            "gradient_checkpointing": any(getattr(m, "gradient_checkpointing", False) is True for m in trainer.model.modules()),
            "device": "cuda" if cuda else "cpu",
            "peak_rss_mib": peak_rss_mib(),
            "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
            "resumed_from_step": int(resume_from.name.split("-")[1]) if resume_from and config.resume else None,
            "steps_run": len(clock.ends),
            "best_dev_macro_f1": trainer.state.best_metric,
            "best_step": int(trainer.state.best_model_checkpoint.rsplit("-", 1)[1]) if trainer.state.best_model_checkpoint else None,
            "config": asdict(config),
            "log_history": trainer.state.log_history,
        }
        write_json(scratch / "summary.json", summary)
    shutil.rmtree(checkpoints, ignore_errors=True)  # finished: nothing left to resume
    log(f"{'full weights' if config.method == 'full' else 'adapter'} saved to {output / 'adapter'}: "
        f"loss {result.training_loss:.4f}, {seconds:.0f}s")
    return {k: v for k, v in summary.items() if k not in ("log_history", "config")}


if __name__ == "__main__":
    from factory.training.cli import run

    run(main, SFTRunConfig)
