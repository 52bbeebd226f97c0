#!/usr/bin/env bash
# bench/qlora_cuda.py on a lent GPU machine without network, in two calls, because one call carries at most 64 MiB.
# First, here: .venv/bin/python bench/qlora_cuda.py pack --version ... --task ...  (fills the git-ignored .devcarry/)
#   bash bench/qlora_cuda_device.sh stage          # .devcarry/a: wheels, tokenizer + task, first part of the base GGUF
#   bash bench/qlora_cuda_device.sh run BUDGET_S [--probe-variants ...]   # .devcarry/b: the rest of the GGUF, the CPU
#                                                  # version's config and splits; trains only if the recipe fits BUDGET_S
set -euo pipefail
stage=/root/stage
site=/root/site
export PYTHONPATH=$site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

case "$1" in
stage)
  mkdir -p $stage && cp -r .devcarry/a/. $stage/
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $site $stage/whl/*.whl
  mkdir -p $stage/tiny && tar -xzf $stage/tiny.tar.gz -C $stage/tiny
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  # The whole QLoRA path on a 2-layer random model first: nf4 load, a few steps, adapter save.
  python3 - <<'EOF'
import json, pathlib, torch, bitsandbytes, transformers
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
from factory.training.sft import SFTRunConfig, main
tiny = pathlib.Path("/root/stage/tiny")
config = AutoConfig.from_pretrained(tiny / "model")
config.num_hidden_layers = 2
AutoModelForCausalLM.from_config(config).save_pretrained(tiny / "random")
AutoTokenizer.from_pretrained(tiny / "model").save_pretrained(tiny / "random")
rows = [json.loads(l) for l in (tiny / "task" / "seeds.jsonl").read_text().splitlines()[:16]]
(tiny / "train.jsonl").write_text("".join(json.dumps({"text": r["text"], "target": r["label"]}) + "\n" for r in rows))
summary = main(SFTRunConfig(base_model_dir=str(tiny / "random"), task_dir=str(tiny / "task"), train_file=str(tiny / "train.jsonl"),
                            output_dir="/tmp/tiny_out", max_steps=3, per_device_train_batch_size=4, logging_steps=1))
print(json.dumps({k: summary[k] for k in ("quantization", "precision", "device", "steps", "train_loss", "peak_gpu_mib")}))
assert summary["quantization"] == "nf4" and summary["device"] == "cuda", summary
EOF
  ;;
run)
  test -d $site/trl || { echo "no staged wheels: this is a fresh machine, run 'stage' first"; exit 3; }
  cat $stage/base.gguf.part1 .devcarry/b/base.gguf.part2 > $stage/base.gguf
  echo "$(cat .devcarry/b/base.gguf.sha256)  $stage/base.gguf" | sha256sum -c -
  mkdir -p /root/cpu_run && tar -xzf .devcarry/b/version.tar.gz -C /root/cpu_run
  FACTORY_COMMIT=$(cat .devcarry/b/commit) python3 bench/qlora_cuda.py train --version /root/cpu_run/version --task $stage/tiny/task --base-model $stage/base.gguf \
      --out /root/qlora --budget-seconds "$2" "${@:3}"
  cp /root/qlora/qlora_cuda_train.json "$OUT/"
  if [ -d /root/qlora/run ]; then  # files come back at most 16 MiB each
    tar -C /root/qlora/run -czf /root/adapter.tar.gz adapter summary.json
    split -b 15M /root/adapter.tar.gz "$OUT/adapter.tar.gz.part"
  fi
  ;;
esac
