"""Render bench/results/*.json as the Markdown tables of BENCHMARKS.md.

    .venv/bin/python bench/tables.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def fmt(value, digits=3) -> str:
    if value is None:
        return ""
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def quality(result: dict) -> str:
    lines = [f"**{result['task']}**: {result['train_rows']} training rows, {result['test_rows']} test rows, "
             f"{result['labels']} labels; commit {result['commit']}, {result['date']}.", "",
             "| model | rows scored | accuracy | macro-F1 | invalid | p50 ms | p95 ms | training s |", "|---|---|---|---|---|---|---|---|"]
    for name, m in result["models"].items():
        lines.append(f"| {name} | {m.get('rows', result['test_rows'])} | {fmt(m['accuracy'])} | {fmt(m['macro_f1'])} | "
                     f"{fmt(m['invalid_rate'])} | {fmt(m.get('latency_p50_ms'), 1)} | {fmt(m.get('latency_p95_ms'), 1)} | "
                     f"{fmt(m.get('train_seconds'), 0)} |")
    h = result.get("head_to_head")  # absent from older results
    if h and "p_value" in h:  # from the product's eval report
        lines += ["", f"Served model {result['served_model']} against the best baseline, {h['baseline']}, on {h['rows']} rows: "
                      f"only the fine-tune right {h['only_first_right']}, only the baseline {h['only_second_right']} "
                      f"(McNemar p = {h['p_value']:.3g}). {result['quantization']['reason']}."]
    elif h:
        behind = ", ".join(f"`{b['label']}` {b['f1_gap']:+.3f}" for b in h["labels_behind"][:5])
        confused = ", ".join(f"`{c['target']}` as `{c['predicted']}` ({c['rows']})" for c in h["confusions"][:5])
        lines += ["", f"{h['finetuned']} against {h['baseline']} on {h['rows']} rows: both right {h['both_right']}, only the "
                      f"fine-tune {h['only_finetuned_right']}, only the baseline {h['only_baseline_right']}, neither "
                      f"{h['neither_right']}. Labels where the fine-tune trails most (F1): {behind}. Its commonest "
                      f"confusions: {confused}."]
    return "\n".join(lines)


def llama_cpp_build(result: dict) -> str:
    build = result.get("llama_cpp")  # absent from older results
    if not build:
        return ""
    wide = [f for f in build["cpu_features"] if f.startswith("AVX512")]
    return f" llama-cpp-python {build['version']}, {'native build (' + ', '.join(wide) + ')' if wide else 'AVX2 build'}."


def inference(result: dict) -> str:
    lines = [f"**{result['task']}**, {result['rows']} test messages, `{Path(result['gguf']).name}`; commit {result['commit']}, "
             f"{result['date']}.{llama_cpp_build(result)}", "", "| path @ concurrency | requests/s | p50 ms | p95 ms | accuracy | invalid |",
             "|---|---|---|---|---|---|"]
    for name, m in result["results"].items():
        lines.append(f"| {name} | {fmt(m['requests_per_second'], 1)} | {fmt(m['latency_p50_ms'], 1)} | "
                     f"{fmt(m['latency_p95_ms'], 1)} | {fmt(m['accuracy'])} | {fmt(m['invalid_rate'])} |")
    lines += ["", "Ratios: " + ", ".join(f"{k} = {v:.2f}" for k, v in result["ratios"].items())]
    if b := result.get("classify_breakdown"):  # absent from older results
        cached = f" (of {b['prompt_tokens_mean']:.1f}, the rest cached)" if "prompt_tokens_mean" in b else ""
        lines += ["", f"Classify path, where the time goes: the prompt's {b['new_prompt_tokens_mean']:.1f} new tokens{cached} "
                      f"{b['prompt_ms_p50']:.1f} ms (p50), then {b['label_passes_mean']:.2f} forward passes to choose the label, "
                      f"{b['label_ms_mean']:.1f} ms (mean; {fmt(b['ms_per_label_pass_p50'], 1)} ms a pass)."]
    return "\n".join(lines)


def run_cost(result: dict) -> str:
    lines = [f"**{result['task']}**, recipe `{result['recipe'] or 'as run'}`: {result['total_seconds']:.0f} s in all; commit "
             f"{result['commit']}, {result['date']}.", "", "| stage | seconds | script peak RSS MiB |", "|---|---|---|"]
    for name, s in result["stages"].items():
        lines.append(f"| {name} | {s['seconds']:.1f} | {fmt(s['script_peak_rss_mib'], 0)} |")
    return "\n".join(lines)


def training_step(result: dict) -> str:
    compare = result.get("compare", "lm_head")  # older results compared LM heads only
    lines = [f"`{Path(result['base_model_dir']).name}`, batch {result['batch_size']}, {result['steps']} steps x {result['repeats']} "
             f"runs per mode; commit {result['commit']}, {result['date']}.", "",
             f"| {compare.replace('_', ' ')} | s per step | peak RSS MiB | training loss |", "|---|---|---|---|"]
    for name, m in result["modes"].items():
        loss = m.get("train_loss", result["train_loss"])
        lines.append(f"| {name} | {m['seconds_per_step']:.2f} | {m['peak_rss_mib']:.0f} | {loss:.4f} |")
    candidate = list(result["modes"])[-1]
    lines += ["", f"Speed-up of {candidate}: {result['speedup']:.2f}x."]
    return "\n".join(lines)


def install(result: dict) -> str:
    lines = [f"Fresh virtual environment and empty pip cache: **{result['total_seconds']:.0f} s** in all, "
             f"{result['pip_cache_mib']} MiB left in pip's cache, {result['venv_mib']} MiB installed, largest process "
             f"{result['peak_child_rss_mib']} MiB; commit {result['commit']}, {result['date']}.", "",
             "| step | seconds |", "|---|---|"]
    lines += [f"| {s['step']} | {s['seconds']:.1f} |" for s in result["steps"]]
    return "\n".join(lines)


def qlora_cuda(result: dict) -> str:
    """GPU probes of the CPU run's config, and once a whole run fits a lease, its GGUF against the CPU run's."""
    gpu, cpu = result["gpu"], result["cpu_lora"]
    lines = [f"**{gpu['name']}**, QLoRA (nf4) on {cpu['train_rows']} rows, batch {result['config']['per_device_train_batch_size']}; "
             f"commit {result['commit']}, {result['date']}.", "",
             "| probe | optimizer | checkpointing | steps | s per step (mean) | s per step (median) | tokens/s | peak GPU MiB | loss |",
             "|---|---|---|---|---|---|---|---|---|"]
    for p in result["probes"]:
        lines.append(f"| {p['variant']} | {p['optimizer']} | {p['gradient_checkpointing']} | {p['steps']} | "
                     f"{fmt(p['seconds_per_step'], 2)} | {fmt(p.get('seconds_per_step_median'), 2)} | {fmt(p['tokens_per_second'], 0)} | "
                     f"{fmt(p['peak_gpu_mib'], 0)} | {fmt(p['train_loss'], 4)} |")
    lines += ["", f"The same config as LoRA on the CPU machine: {cpu['train_seconds']:.0f} s for {cpu['steps']} steps "
                  f"({cpu['train_seconds'] / cpu['steps']:.2f} s a step), {cpu['precision']}, {cpu['quantization']}."]
    if "qlora_gguf_q8_0" in result:
        tuned, base, h = result["qlora_gguf_q8_0"], result["cpu_lora_gguf_q8_0"], result["head_to_head"]
        lines += ["", f"Whole run: {result['qlora']['train_seconds']:.0f} s. GGUF q8_0 classify on {tuned['rows']} test rows: QLoRA "
                      f"{fmt(tuned['accuracy'])}, CPU LoRA {fmt(base['accuracy'])}; only QLoRA right {h['only_finetuned_right']}, "
                      f"only CPU LoRA {h['only_baseline_right']} (McNemar p = {h['mcnemar_exact_p']:.2f})."]
    elif run := result.get("full_run"):
        lines += ["", f"Whole run: not trained: {run['why']}."]
    return "\n".join(lines)


def serve_load(result: dict) -> str:
    lines = [f"**{result['task']}**, `{result['gguf']}`, {result['seconds']:.0f} s at each concurrency; the anchor's chat "
             f"completions {result['anchor_mean_completion_tokens']} tokens on average (at most "
             f"{result['anchor_max_tokens']}); commit {result['commit']}, {result['date']}.", "",
             "| server | clients | requests/s | p50 ms | p95 ms | failed | CPU-s a request | log lines | x anchor |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result["results"]:
        lines.append(f"| {r['server']} | {r['clients']} | {r['requests_per_s']:.2f} | {fmt(r['p50_ms'], 0)} | "
                     f"{fmt(r['p95_ms'], 0)} | {r['failed']} | {r['cpu_s_per_request']:.2f} | {r.get('log_lines', '')} | "
                     f"{fmt(r.get('throughput_vs_anchor'), 2)} |")
    return "\n".join(lines)


def pii_recall(result: dict) -> str:
    """Found: the planted string is gone and its kind reported; exact: only it was replaced, by its own placeholder."""
    s = result["scrubber"]
    lines = [f"{result['per_kind']} planted sentences a kind, {result['negatives']} look-alikes ({result['negatives_flagged']} "
             f"flagged), seed {result['seed']}; presidio-analyzer {s['presidio_analyzer']}, phone regions "
             f"{', '.join(s['phone_regions'])}, no spaCy model; commit {result['commit']}, {result['date']}.", "",
             "| kind | planted | found | recall | exact | false positives | spurious |", "|---|---|---|---|---|---|---|"]
    for kind, m in result["kinds"].items():
        lines.append(f"| {kind} | {m['planted']} | {m['found']} | {fmt(m['recall'])} | {m['exact']} | {m['false_positives']} | "
                     f"{m['spurious']} |")
    below = ", ".join(result["pattern_kinds_below_target"]) or "none"
    lines += ["", f"Pattern kinds below recall {result['target_recall']}: {below}."]
    return "\n".join(lines)


def gates_scale(result: dict) -> str:
    """Each phase of `accepted_examples` on its own, then what the gates caught of what was planted."""
    r, t = result["ratios"], result["targets"]
    tokens = f"token counts with {result['count_tokens']}" if result["count_tokens"] else "no token counting"
    lines = [f"{result['rows']} candidate rows ({result['real_rows']} Banking77 training rows, {result['synthetic_rows']} synthetic, "
             f"{result['planted_rows']} planted, {result['label_flips']} labels flipped), {result['eval_rows']} eval rows, seed "
             f"{result['seed']}, {tokens}; commit {result['commit']}, {result['date']}.", "",
             "| phase | rows | seconds | rows/s | RSS before MiB | peak RSS MiB |", "|---|---|---|---|---|---|"]
    for name, p in result["phases"].items():
        lines.append(f"| {name} | {p['rows']} | {p['seconds']:.2f} | {fmt(p['rows_per_s'], 0)} | {fmt(p['rss_before_mib'], 0)} | "
                     f"{fmt(p['peak_rss_mib'], 0)} |")
    lines += ["", f"All gates (apply_gates + mislabels) / encoding: **{r['gates_vs_encoding']:.2f}** (target {t['ratio']}); with PII "
                  f"scrubbing {r['gates_with_pii_vs_encoding']:.2f}; against encoding plus the model load "
                  f"({result['model_load_seconds']:.1f} s) {r['gates_vs_encoding_with_model_load']:.2f}."]
    if g := result.get("growth"):
        s = g["seconds_ratio"]
        lines += ["", f"Growth from {g['from_rows']} rows: all gates x{s['all_gates']} (target {t['growth']}); "
                      + ", ".join(f"{k} x{v}" for k, v in s.items() if k != "all_gates") + "."]
    lines += ["", "| planted | rows | caught | recall | reachable | recall reachable | cosine >= threshold | outcomes |",
              "|---|---|---|---|---|---|---|---|"]
    for kind, m in result["planted"].items():
        how = ", ".join(f"{k} {v}" for k, v in sorted(m["by"].items(), key=lambda kv: -kv[1]))
        lines.append(f"| {kind} | {m['planted']} | {m['caught']} | {fmt(m['recall'])} | {m['reachable']} | "
                     f"{fmt(m['recall_reachable'])} | {fmt(m['cosine_at_threshold_share'])} | {how} |")
    fp, mis = result["false_positives"], result["mislabels"]
    rejected = ", ".join(f"{gate} {n}" for gate, n in fp["rejected_by_gate"].items()) or "none"
    lines += ["", f"Clean rows ({fp['clean_rows']}) rejected: {rejected}; accepted in a shared cluster: "
                  f"{fp['accepted_in_a_shared_cluster']}.",
              "", f"Label flips: {mis['flagged']} rows flagged, precision {fmt(mis['precision'])}, recall {fmt(mis['recall'])} of "
                  f"the {mis['flipped_accepted']} flipped rows accepted; the suggested label is the true one for "
                  f"{fmt(mis['suggested_the_true_label'])} of those found."]
    return "\n".join(lines)


def learning_curve(results: list[dict]) -> str:
    """One line per fine-tuned quality run, by training rows: what more data buys against the baselines.
    "same rows": the baseline refit on the fine-tune's own training split (absent from older results)."""
    lines = ["| seed rows | rows trained | base model | recipe | epochs | training s | tokens/s | TF-IDF LR | MiniLM LR | "
             "MiniLM LR same rows | GGUF q8_0 classify (rows) | fine-tune HF (rows) |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    tuned = [r for r in results if "finetuned_gguf_q8_0_constrained" in r.get("models", {}) or "served_model" in r]
    for r in sorted(tuned, key=lambda r: (r["train_rows"], r["adapter"]["epochs"])):
        m, a = r["models"], r["adapter"]
        # Results from `factory run` name the served model; its baselines are fit on the fine-tune's own rows.
        gguf, hf = m[r.get("served_model", "finetuned_gguf_q8_0_constrained")], m.get("finetuned_hf", {})
        same_rows = m["minilm_logreg"] if "served_model" in r else m.get("minilm_logreg_same_rows", {})
        all_seed_rows = {} if "served_model" in r else m["minilm_logreg"]
        base = Path(r.get("base_model", "smollm2-135m")).stem  # older results predate --base-model
        recipe = Path(r["recipe"]).stem
        if r.get("answer_words"):
            recipe += " (answers in words, each its own first word)" if r.get("distinct_first_words") else " (answers in words)"
        recipe += f", seed {r['seed']}" if r.get("seed") else ""
        recipe += f", {r['variants_per_seed']} generated variant(s) per seed" if r.get("variants_per_seed") else ""
        recipe += ", through `factory run`" if "served_model" in r else ""
        lines.append(f"| {r['train_rows']} | {a['train_rows']} | {base} | {recipe} | {a['epochs']:g} | "
                     f"{a['train_seconds']:.0f} | {a['tokens_per_second']:.0f} | {fmt(m['tfidf_logreg']['accuracy'])} | "
                     f"{fmt(all_seed_rows.get('accuracy'))} | {fmt(same_rows.get('accuracy'))} | "
                     f"{fmt(gguf['accuracy'])} ({gguf['rows']}) | {fmt(hf.get('accuracy'))} ({hf.get('rows', '')}) |")
    return "\n".join(lines)


def main() -> None:
    results = []
    for path in sorted(RESULTS.glob("*.json")):
        result = json.loads(path.read_text())
        results.append(result)
        renderers = {"quality": quality, "inference": inference, "run_cost": run_cost, "training_step": training_step,
                     "install": install, "qlora_cuda": qlora_cuda, "serve_load": serve_load, "pii_recall": pii_recall,
                     "gates_scale": gates_scale}
        render = next(fn for prefix, fn in renderers.items() if result["benchmark"].startswith(prefix))
        m = result["machine"]
        family = f" (family {m['cpu_family']} model {m['cpu_model']})" if m.get("cpu_family") else ""  # older results lack it
        print(f"### {path.stem}\n\nMachine: {m['cores']} cores, {m['memory_gib']} GiB, {m['cpu']}{family}, Python {m['python']}.\n")
        print(render(result) + "\n")
    print("### learning curve (accuracy on the test split)\n\n" + learning_curve([r for r in results if r["benchmark"].startswith("quality")]))


if __name__ == "__main__":
    sys.exit(main())
