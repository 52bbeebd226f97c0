"""Tier 4: the training script's full fine-tune on the real packaged model, a few steps, through export."""
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from factory.lib.files import write_jsonl
from factory.lib.recipes import RECIPES_DIR, load_recipe
from factory_tests.conftest import TINY_SEEDS


def _config(tiny_task, base_dir, out, **overrides):
    from factory.training.sft import SFTRunConfig

    train = out.parent / "train.jsonl"
    write_jsonl(train, [{"id": f"{label}-{i}", "text": text, "target": label}
                        for label, texts in TINY_SEEDS.items() for i, text in enumerate(texts)])
    settings = {"method": "full", "max_steps": 2, "per_device_train_batch_size": 4, "learning_rate": 1e-4,
                "warmup_ratio": 0.0, "max_length": 256, "quantization": "none", **overrides}
    return SFTRunConfig(base_model_dir=str(base_dir), task_dir=str(tiny_task), train_file=str(train),
                        output_dir=str(out), **settings)


@pytest.mark.slow
def test_full_fine_tune_trains_every_weight_and_exports_a_gguf(tmp_path, tiny_task, resources):
    import torch

    from factory.lib.task import load_task
    from factory.runtime.classifier import GGUFClassifier
    from factory.training import export_gguf, sft
    from factory.training.weights import is_adapter, load_finetuned

    base_dir = resources["base_model"].hf_dir()
    summary = sft.main(_config(tiny_task, base_dir, tmp_path / "trained"), log=lambda _: None)

    base = load_finetuned(str(base_dir), None)
    assert summary["method"] == "full" and summary["steps"] == 2
    assert summary["trainable_parameters"] == sum(p.numel() for p in base.parameters())
    weights = tmp_path / "trained" / "adapter"
    assert not is_adapter(weights) and (weights / "model.safetensors").exists()
    tuned = load_finetuned(str(base_dir), str(weights))
    layer = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(tuned.state_dict()[layer], base.state_dict()[layer])

    exported = export_gguf.main(export_gguf.ExportConfig(
        base_model_dir=str(base_dir), adapter_dir=str(weights), output_dir=str(tmp_path / "gguf")), log=lambda _: None)
    classifier = GGUFClassifier(str(tmp_path / "gguf" / exported["files"]["q8_0"]["file"]), load_task(tiny_task))
    assert classifier.classify("I was charged twice.").label in TINY_SEEDS


@pytest.mark.parametrize("overrides, message", [
    ({"method": "adapter"}, "method must be 'lora' or 'full'"),
    ({"quantization": "nf4"}, "quantization 'nf4' needs method 'lora'"),
    ({"precision": "fp16"}, "precision must be 'auto', 'bf16' or 'fp32'"),
    ({"optimizer": "sgd"}, "optimizer must be one of adamw_torch, adamw_8bit, paged_adamw_8bit"),
    ({"distill_weight": 1.0, "soft_targets_file": "s"}, r"distill_weight must be in \[0, 1\), got 1.0"),
])
def test_sft_refuses_settings_it_cannot_honour(tmp_path, tiny_task, overrides, message):
    from factory.training import sft

    with pytest.raises(ValueError, match=message):
        sft.main(_config(tiny_task, tmp_path / "no-model", tmp_path / "out", **overrides), log=lambda _: None)
    assert not (tmp_path / "out").exists()


BENCH_RECIPES_DIR = Path(__file__).resolve().parents[1] / "bench" / "recipes"
RECIPE_FILES = sorted(path for folder in (RECIPES_DIR, BENCH_RECIPES_DIR) for path in folder.glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPE_FILES, ids=lambda path: f"{path.parent.parent.name}/{path.stem}")
def test_every_recipe_builds_an_sft_config(recipe, tmp_path):
    # A misspelt key or a bad value in a recipe fails here, not hours into a run.
    from factory.training.sft import SFTRunConfig

    settings = load_recipe(str(recipe))
    soft = {"soft_targets_file": "s"} if settings.get("distill_weight") else {}  # the asset writes it
    config = SFTRunConfig(base_model_dir="m", task_dir="t", train_file="f", output_dir=str(tmp_path), **settings, **soft)
    assert config.num_train_epochs > 0 and config.learning_rate > 0


@pytest.mark.parametrize("checkpointing", [False, True])
def test_qlora_trains_nf4_with_the_recipes_checkpointing_and_optimizer(tmp_path, tiny_task, resources, checkpointing):
    """The QLoRA path, on CPU here (bitsandbytes runs nf4 there too); a GPU takes the same code (BENCHMARKS.md)."""
    import torch

    from factory.training import sft
    from factory.training.weights import load_finetuned

    base_dir = resources["base_model"].hf_dir()
    config = _config(tiny_task, base_dir, tmp_path / "trained", method="lora", quantization="nf4", optimizer="adamw_8bit",
                     gradient_checkpointing=checkpointing, learning_rate=1e-3)
    summary = sft.main(config, log=lambda _: None)
    # peft's k-bit preparation turns checkpointing on by itself: what ran must be what the recipe said
    assert (summary["quantization"], summary["optimizer"], summary["gradient_checkpointing"]) == ("nf4", "adamw_8bit", checkpointing)
    assert summary["steps"] == 2 and summary["seconds_per_step_median"] > 0
    if not checkpointing:  # the adapter trained over 4-bit weights merges into the full-precision base for export
        layer = "model.layers.0.self_attn.q_proj.weight"
        tuned = load_finetuned(str(base_dir), str(tmp_path / "trained" / "adapter")).state_dict()[layer]
        assert not torch.equal(tuned, load_finetuned(str(base_dir), None).state_dict()[layer])


@pytest.mark.parametrize("cpu_bf16, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_precision_trains_in_bf16_only_on_a_cpu_with_bf16_instructions(
        tmp_path, tiny_task, resources, monkeypatch, cpu_bf16, expected):
    from factory.training import sft

    monkeypatch.setattr(sft, "cpu_runs_bf16", lambda: cpu_bf16)
    config = _config(tiny_task, resources["base_model"].hf_dir(), tmp_path / "trained",
                     method="lora", max_steps=1, precision="auto")
    assert sft.main(config, log=lambda _: None)["precision"] == expected


@pytest.mark.parametrize("precision, cuda, cpu_bf16, expected", [
    ("auto", True, False, "bf16"), ("auto", False, True, "bf16"), ("auto", False, False, "fp32"),
    ("fp32", True, True, "fp32"), ("bf16", False, False, "bf16"),
])
def test_an_explicit_precision_wins_over_the_hardware(precision, cuda, cpu_bf16, expected):
    from factory.training.sft import resolve_precision

    assert resolve_precision(precision, cuda, cpu_bf16) == expected


def test_lm_head_scores_only_the_answer_tokens_with_the_same_loss(resources, monkeypatch):
    import torch
    import trl.trainer.utils as trl_utils
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from factory.training.sft import lm_head_on_answer_tokens_only

    base_dir = resources["base_model"].hf_dir()
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    trl_utils.add_fused_lm_head(model)
    prompt, answer = tokenizer("Route this email: my card was charged twice.")["input_ids"], tokenizer(" billing")["input_ids"]
    input_ids = torch.tensor([prompt + answer])
    labels = torch.tensor([[-100] * len(prompt) + answer])

    scored: list[int] = []
    project = trl_utils._ChunkedLogProbFunction.apply

    def counting(hidden, *args):
        scored.append(hidden.shape[0])
        return project(hidden, *args)

    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply", counting)
    every_position = model(input_ids=input_ids, labels=labels, fused_lm_head=True).loss
    with lm_head_on_answer_tokens_only():
        answer_only = model(input_ids=input_ids, labels=labels, fused_lm_head=True).loss
    assert scored == [input_ids.shape[1] - 1, len(answer)]
    assert torch.allclose(answer_only, every_position, atol=1e-5)
    assert trl_utils._use_triton is not None and not trl_utils._use_triton(torch.device("cpu"))


def test_the_trainer_supervises_exactly_the_answer_and_its_end_of_turn_token(tmp_path, tiny_task, resources):
    from factory.lib.files import read_jsonl
    from factory.lib.task import load_task
    from factory.training.sft import build_trainer

    config = _config(tiny_task, resources["base_model"].hf_dir(), tmp_path / "trained", method="lora",
                     per_device_train_batch_size=6, group_by_length=False)
    trainer, _ = build_trainer(config, tmp_path / "checkpoints", log=lambda _: None)
    tokenizer, contract = trainer.processing_class, load_task(tiny_task).build_contract()
    end_of_turn = tokenizer.convert_tokens_to_ids(tokenizer.eos_token)
    batch = next(iter(trainer.get_train_dataloader()))
    answers = {tuple(tokenizer(contract.render(r["target"]), add_special_tokens=False)["input_ids"]) + (end_of_turn,)
               for r in read_jsonl(config.train_file)}
    assert len(batch["input_ids"]) == 6
    for ids, labels in zip(batch["input_ids"].tolist(), batch["labels"].tolist()):
        supervised = [(i, token) for i, (token, label) in enumerate(zip(ids, labels)) if label != -100]
        assert all(labels[i] == token for i, token in supervised)  # a label is its own input id, shifted by the model
        positions = [i for i, _ in supervised]
        assert positions == list(range(positions[0], positions[-1] + 1))  # one run at the end of the prompt
        assert tuple(token for _, token in supervised) in answers
        assert ids[positions[0] - 1] != end_of_turn and tokenizer.decode(ids[: positions[0]]).endswith("assistant\n")


def _write_dev(tiny_task, path):
    from factory_tests.conftest import TINY_EVAL

    write_jsonl(path, [{"id": f"dev-{i}", "text": t, "target": lab} for i, (t, lab) in enumerate(TINY_EVAL["dev"])])
    return str(path)


@pytest.mark.slow
def test_a_killed_training_run_leaves_no_adapter_and_resumes_from_its_last_checkpoint(tmp_path, tiny_task, resources):
    import json
    import signal
    import subprocess
    import sys
    import time
    from dataclasses import asdict

    out = tmp_path / "trained"
    config = _config(tiny_task, resources["base_model"].hf_dir(), out, method="lora", max_steps=4, eval_steps=2,
                     learning_rate=1e-3, logging_steps=1, dev_file=_write_dev(tiny_task, tmp_path / "dev.jsonl"))
    path = tmp_path / "sft.json"
    path.write_text(json.dumps(asdict(config)))
    command = [sys.executable, "-m", "factory.training.sft", "--config", str(path)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = tmp_path / ".checkpoints-trained"
    deadline = time.monotonic() + 300
    while not (checkpoints / "checkpoint-2" / "trainer_state.json").exists():
        assert process.poll() is None and time.monotonic() < deadline, "training ended before its first checkpoint"
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not out.exists()  # nothing half-written under the final name
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".partial-trained-"))  # the killed scratch

    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_from_step"] == 2 and summary["steps"] == 4 and summary["steps_run"] == 2
    dev_scores = {h["step"]: h["eval_dev_macro_f1"] for h in summary["log_history"] if "eval_dev_macro_f1" in h}
    assert set(dev_scores) >= {4} and summary["best_dev_macro_f1"] == max(dev_scores.values())
    assert summary["best_step"] in dev_scores and dev_scores[summary["best_step"]] == summary["best_dev_macro_f1"]
    assert not checkpoints.exists()  # finished: nothing left to resume


def test_training_stops_when_dev_macro_f1_stops_improving(tmp_path, tiny_task, resources):
    from factory.training import sft

    # A zero learning rate changes nothing, so the second evaluation is no better than the first.
    config = _config(tiny_task, resources["base_model"].hf_dir(), tmp_path / "trained", method="lora", max_steps=8,
                     eval_steps=2, learning_rate=0.0, early_stopping_patience=1,
                     dev_file=_write_dev(tiny_task, tmp_path / "dev.jsonl"))
    summary = sft.main(config, log=lambda _: None)
    assert summary["steps"] == 4 and summary["best_step"] == 2


@dataclass
class _Step:
    output_dir: str
    fail: bool = False


def _step(config: _Step, log) -> dict:
    if config.fail:
        raise ValueError(f"cannot write {config.output_dir}")
    log(f"wrote {config.output_dir}")
    return {"output_dir": config.output_dir}


def test_one_script_process_runs_several_configs_in_turn_and_names_the_one_that_failed(tmp_path, capsys):
    from factory.training.cli import error_path, run

    paths = []
    for name, fail in (("a", False), ("b", True), ("c", False)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps({"output_dir": name, "fail": fail}))
        error_path(paths[-1]).write_text("left by an earlier run")
    assert run(_step, _Step, ["--config", str(paths[0]), "--config", str(paths[2])]) == [{"output_dir": "a"}, {"output_dir": "c"}]
    assert not any(error_path(p).exists() for p in paths[::2])
    with pytest.raises(ValueError, match="cannot write b"):
        run(_step, _Step, [a for p in paths for a in ("--config", str(p))])
    assert "ValueError: cannot write b" in error_path(paths[1]).read_text()
    assert not error_path(paths[0]).exists() and not error_path(paths[2]).exists()
    printed = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["output_dir"] for line in printed] == ["a", "c", "a"]  # c never ran after b failed


def test_distillation_adds_the_soft_targets_cross_entropy_at_the_position_before_the_answer(tmp_path, tiny_task, resources):
    import torch
    import torch.nn.functional as F

    from factory.lib.task import load_task
    from factory.training.sft import build_trainer, lm_head_on_answer_tokens_only

    labels = list(load_task(tiny_task).contract.labels)
    ids = [f"{label}-{i}" for label, texts in TINY_SEEDS.items() for i in range(len(texts))]
    rng = torch.Generator().manual_seed(0)
    soft = {i: torch.softmax(torch.randn(len(labels), generator=rng) * 3, 0).tolist() for i in ids}
    write_jsonl(tmp_path / "soft.jsonl", [{"id": i, "probabilities": dict(zip(labels, p))} for i, p in soft.items()])
    config = _config(tiny_task, resources["base_model"].hf_dir(), tmp_path / "trained", per_device_train_batch_size=6,
                     group_by_length=False, precision="fp32", distill_weight=0.4, soft_targets_file=str(tmp_path / "soft.jsonl"))
    trainer, _ = build_trainer(config, tmp_path / "checkpoints", log=lambda _: None)
    batch = next(iter(trainer.get_train_dataloader()))
    targets = batch["soft_targets"]
    assert targets.shape == (6, 3) and any(torch.allclose(targets[0], torch.tensor(p)) for p in soft.values())
    with lm_head_on_answer_tokens_only():
        loss = trainer.compute_loss(trainer.model, dict(batch))

    # the same loss from a plain forward: the answer's mean token cross-entropy, and at the position predicting the
    # answer's first token, the soft targets against the model's distribution over the labels' first tokens
    with torch.no_grad():
        logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")).logits
    answer = F.cross_entropy(logits[:, :-1].flatten(0, 1), batch["labels"][:, 1:].flatten(), ignore_index=-100)
    before = (batch["labels"] != -100).int().argmax(dim=1) - 1
    first_tokens = trainer.label_token_ids
    label_logits = logits[torch.arange(6), before][:, first_tokens]
    distill = -(targets * torch.log_softmax(label_logits, dim=-1)).sum(-1).mean()
    assert torch.allclose(loss, 0.6 * answer + 0.4 * distill, atol=1e-4)
    tokenizer = trainer.processing_class
    assert [tokenizer.decode([t]) for t in first_tokens.tolist()] == [tokenizer.decode(
        tokenizer(label, add_special_tokens=False)["input_ids"][:1]) for label in labels]


def test_distillation_refuses_answers_that_share_a_first_token_and_rows_without_a_soft_target(tmp_path, tiny_task, resources):
    import yaml

    from factory.lib.errors import DataError
    from factory.training.sft import build_trainer

    write_jsonl(tmp_path / "soft.jsonl", [{"id": "billing-0", "probabilities": {"billing": 1.0}}])
    config = _config(tiny_task, resources["base_model"].hf_dir(), tmp_path / "trained", distill_weight=0.5,
                     soft_targets_file=str(tmp_path / "soft.jsonl"))
    with pytest.raises(DataError, match=r"train.jsonl, line 2: row 'billing-1' has no soft target"):
        build_trainer(config, tmp_path / "checkpoints", log=lambda _: None)
    spec = yaml.safe_load((tiny_task / "task.yaml").read_text())
    spec["contract"]["answers"] = {"billing": "card charge", "login": "card login", "shipping": "parcel"}
    (tiny_task / "task.yaml").write_text(yaml.safe_dump(spec))
    write_jsonl(tmp_path / "soft.jsonl", [{"id": f"{label}-{i}", "probabilities": {label: 1.0}}
                                          for label, texts in TINY_SEEDS.items() for i in range(len(texts))])
    with pytest.raises(ValueError, match="first tokens differ; billing, login share theirs"):
        build_trainer(config, tmp_path / "checkpoints", log=lambda _: None)
    with pytest.raises(ValueError, match="distill_weight needs soft_targets_file"):
        _config(tiny_task, tmp_path / "no-model", tmp_path / "out", distill_weight=0.5)
