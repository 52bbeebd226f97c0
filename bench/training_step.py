"""Training speed: seconds per step and peak memory of the factory's trainer against TRL's own CPU behaviour.

    .venv/bin/python bench/training_step.py --sft-config data/bench/versions/bench_full.v1/_configs/sft.json

Runs the training script for a few steps on the config a graph run wrote, in two modes, each in a fresh process so
peak memory is its own, taking turns so both see the same machine. `--compare lm_head`: the LM head projecting only
the answer positions (the factory's default) against scoring every position (TRL's choice off Triton devices); the
losses must match. `--compare precision`: fp32 against bf16 mixed precision; the losses differ by rounding only.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import write_result  # noqa: E402

COMPARISONS = {"lm_head": ("every_position", "answer_only"), "precision": ("fp32", "bf16")}  # baseline first


def worker(config_path: str, mode: str, steps: int) -> dict:
    from unittest import mock

    from factory.training import sft

    settings = json.loads(Path(config_path).read_text())
    with tempfile.TemporaryDirectory() as scratch:
        settings.update(max_steps=steps, validation_file=None, output_dir=str(Path(scratch) / "out"), logging_steps=steps)
        if mode in COMPARISONS["precision"]:
            settings["precision"] = mode
        config = sft.SFTRunConfig(**settings)
        head = contextlib.nullcontext if mode == "every_position" else sft.lm_head_on_answer_tokens_only
        with mock.patch.object(sft, "lm_head_on_answer_tokens_only", head):
            summary = sft.main(config, log=lambda _: None)
    return {k: summary[k] for k in ("train_seconds", "train_loss", "peak_rss_mib", "steps", "precision")}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sft-config", required=True, help="_configs/sft.json of a version the graph trained")
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per run")
    parser.add_argument("--repeats", type=int, default=2, help="runs per mode, taking turns")
    parser.add_argument("--compare", choices=sorted(COMPARISONS), default="lm_head")
    parser.add_argument("--name", default="training_step")
    parser.add_argument("--out", default=None)
    parser.add_argument("--worker", choices=[m for modes in COMPARISONS.values() for m in modes], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.sft_config, args.worker, args.steps)))
        return {}

    baseline, candidate = modes_compared = COMPARISONS[args.compare]
    runs: dict[str, list[dict]] = {mode: [] for mode in modes_compared}
    for repeat in range(args.repeats):
        for mode in (modes_compared if repeat % 2 == 0 else modes_compared[::-1]):
            done = subprocess.run([sys.executable, __file__, "--sft-config", args.sft_config, "--steps", str(args.steps),
                                   "--worker", mode], check=True, capture_output=True, text=True)
            runs[mode].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(mode, runs[mode][-1], flush=True)
    losses = {run["train_loss"] for mode in modes_compared for run in runs[mode]}
    if args.compare == "lm_head" and max(losses) - min(losses) > 1e-4:
        raise SystemExit(f"the two modes trained differently: losses {sorted(losses)}")
    modes = {mode: {"seconds_per_step": statistics.median(r["train_seconds"] / r["steps"] for r in runs[mode]),
                    "peak_rss_mib": max(r["peak_rss_mib"] for r in runs[mode]),
                    "train_loss": statistics.median(r["train_loss"] for r in runs[mode]), "runs": runs[mode]}
             for mode in modes_compared}
    settings = json.loads(Path(args.sft_config).read_text())
    payload = {"base_model_dir": settings["base_model_dir"], "batch_size": settings["per_device_train_batch_size"],
               "steps": args.steps, "repeats": args.repeats, "compare": args.compare, "train_loss": min(losses),
               "modes": modes, "speedup": modes[baseline]["seconds_per_step"] / modes[candidate]["seconds_per_step"]}
    write_result(args.name, payload, args.out)
    return payload


if __name__ == "__main__":
    main()
