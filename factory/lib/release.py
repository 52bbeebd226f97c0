"""What a release ships beside its GGUF: an Ollama Modelfile and a model card."""
from __future__ import annotations

import json
import re

SYSTEM_MARKER, PROMPT_MARKER = "\x00FACTORY_SYSTEM\x00", "\x00FACTORY_PROMPT\x00"


def ollama_template(rendered_with_markers: str) -> str:
    """The GGUF's own single-turn prompt as an Ollama (Go) template: the Jinja template rendered once with marker
    messages, the markers turned into {{ .System }} and {{ .Prompt }}. Exact for one system + one user turn, which
    is every request this model serves."""
    if SYSTEM_MARKER not in rendered_with_markers or PROMPT_MARKER not in rendered_with_markers:
        raise ValueError("the chat template dropped the system or user message: no Modelfile template can be derived")
    return rendered_with_markers.replace(SYSTEM_MARKER, "{{ .System }}").replace(PROMPT_MARKER, "{{ .Prompt }}")


def modelfile(gguf_name: str, template: str, stops: list[str], system_prompt: str) -> str:
    """`ollama create NAME -f Modelfile` beside the GGUF: its template, its stop tokens, greedy decoding."""
    for name, text in (("template", template), ("system prompt", system_prompt)):
        if '"""' in text:
            raise ValueError(f'the {name} contains """, which a Modelfile cannot quote')
    lines = [f"FROM ./{gguf_name}", f'TEMPLATE """{template}"""', f'SYSTEM """{system_prompt}"""', "PARAMETER temperature 0"]
    lines += [f"PARAMETER stop {json.dumps(stop)}" for stop in stops]
    return "\n".join(lines) + "\n"


def modelfile_prompt(text: str, system: str, prompt: str) -> str:
    """What Ollama sends the model for one turn of a Modelfile written above: its template with both fields filled."""
    template = re.search(r'^TEMPLATE """(.*?)"""$', text, re.S | re.M)
    if template is None:
        raise ValueError("no TEMPLATE in the Modelfile")
    return template.group(1).replace("{{ .System }}", system).replace("{{ .Prompt }}", prompt)


def model_card(*, task, partition: str, version: int, served_test: dict, table_md: str, gates_md: str,
               training: dict, data: dict, gguf: dict, best_baseline: str | None, encoder_reason: str | None = None) -> str:
    labels = task.contract.labels or {}
    label_lines = "\n".join(f"- `{label}`: {desc}" for label, desc in labels.items())
    abstain = f"; below {task.abstain_below} it answers `{task.fallback_label}`" if task.fallback_label else ""
    if encoder_reason:
        model = f"""- **Not a generative model**: MiniLM sentence embeddings + logistic regression (folder `encoder/`), released
  in place of the fine-tune: {encoder_reason}
- Served path: the label with the highest probability, that probability as the confidence{abstain}
- The fine-tune it replaced: {training.get('base_model', '?')}, {training.get('method', '?')}, recipe {training.get('recipe', '?')}"""
        run = (f"- `factory classify --task {task.name} \"some text\"` (the champion) or `factory serve --task {task.name}`\n"
               "- No Ollama Modelfile: Ollama runs generative GGUF models only")
    else:
        model = f"""- Base model: {training.get('base_model', '?')}; method: {training.get('method', '?')}; recipe: {training.get('recipe', '?')}
- Format: GGUF {gguf['quantization']} ({gguf['bytes'] / 1e6:.1f} MB), sha256 `{gguf['sha256']}`
- Served path: answers constrained to the labels, with a confidence{abstain}"""
        run = (f"- `factory classify --task {task.name} \"some text\"` (the champion) or `factory classify --task {task.name} "
               f"--version {partition} FILE`\n- Ollama: `ollama create {task.name} -f Modelfile` in this folder, then "
               f"`ollama run {task.name}`")
    return f"""# {task.name} v{version} (dataset version {partition})

{task.description}

## Model
{model}

## Intended use
{task.contract.type} of inputs like the task's seeds into:
{label_lines}

Out of scope: inputs unlike the training data; any decision that must not be automated without review.

## Training data
- Rows: {data.get('accepted', '?')} accepted of {data.get('input', '?')} candidates; rejected by gate: {json.dumps(data.get('rejected_by_gate', {}))}
- Train rows: {training.get('train_rows', '?')}; training time {training.get('train_seconds', 0):.0f} s

## Evaluation (test set, same rows for every model)
{table_md}

Best baseline: {best_baseline or 'none'}. Test macro-F1 of this model: {served_test.get('macro_f1', served_test.get('exact_match', 0)):.3f}.

## Release gates
{gates_md}

## How to run
{run}

## Limitations
Scores come from the eval sets above; inputs far from them may score lower. Confidence is calibrated only as far as
the report's ECE says.
"""
