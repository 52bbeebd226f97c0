"""An LLM judge of generated rows: the seven-dimension rubric, its verdicts parsed and ruled on.

A row passes when its total reaches `min_total` of 35 and correctness, format and safety reach their own minimums.
The judge is trusted only as far as it agrees with the labels people wrote: `agreement` measures that on seeds given
their own label and a wrong one.
"""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass

import jinja2

from factory.lib.teacher import TEMPLATES_DIR, first_json

DIMENSIONS = ("realism", "correctness", "format", "difficulty", "diversity", "learnability", "safety")
# Asked "in a few words", a 1.5B judge still ran past 200 tokens on 7 of 154 Banking77 verdicts, which then did not
# parse; a schema-constrained backend stops the reason here and closes the object.
REASON_MAX_CHARS = 120
VERDICT_SCHEMA = {
    "type": "object",
    "properties": {**{d: {"enum": [1, 2, 3, 4, 5]} for d in DIMENSIONS},
                   "reason": {"type": "string", "maxLength": REASON_MAX_CHARS}},
    "required": [*DIMENSIONS, "reason"],
}


@dataclass(frozen=True)
class JudgeRule:
    min_total: int = 26
    min_correctness: int = 4
    min_format: int = 5
    min_safety: int = 4


def judge_template() -> tuple[jinja2.Template, str]:
    source = (TEMPLATES_DIR / "judge.jinja").read_text(encoding="utf-8")
    return jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False).from_string(source), \
        hashlib.sha256(source.encode()).hexdigest()


def judge_messages(template: jinja2.Template, task, text: str, label: str) -> list[dict]:
    content = template.render(task_description=task.description or task.name, labels=task.contract.labels or {},
                              text=text[: task.max_input_chars], label=label, input_style=task.input_style)
    return [{"role": "user", "content": content}]


def row_hash(text: str, label: str) -> str:
    """What a verdict is cached by: the row's text and label, nothing else."""
    return hashlib.sha256(json.dumps([text, label]).encode()).hexdigest()


def parse_verdict(raw: str) -> dict:
    """Scores 1-5 per dimension and a reason; ValueError naming what is missing or out of range."""
    value, _ = first_json(raw or "")
    if not isinstance(value, dict):
        raise ValueError(f"the verdict is not a JSON object: {str(raw)[:80]!r}")
    scores = {}
    for dimension in DIMENSIONS:
        score = value.get(dimension)
        if isinstance(score, str) and score.strip().isdigit():
            score = int(score)
        if not isinstance(score, int) or isinstance(score, bool) or not 1 <= score <= 5:
            raise ValueError(f"{dimension} must be an integer 1-5, got {score!r}")
        scores[dimension] = score
    return {**scores, "reason": str(value.get("reason", ""))[:300]}


def rule_on(verdict: dict, rule: JudgeRule = JudgeRule()) -> tuple[bool, str]:
    """(passed, why): every threshold the verdict misses, named."""
    total = sum(verdict[d] for d in DIMENSIONS)
    misses = [f"total {total} < {rule.min_total}"] if total < rule.min_total else []
    for dimension, minimum in (("correctness", rule.min_correctness), ("format", rule.min_format), ("safety", rule.min_safety)):
        if verdict[dimension] < minimum:
            misses.append(f"{dimension} {verdict[dimension]} < {minimum}")
    return not misses, "; ".join(misses) or f"total {total}/35"


def flipped_label(label: str, labels: list[str], seed: int) -> str:
    """A wrong label for a seed, chosen with a seed: what the judge must refuse."""
    others = sorted(set(labels) - {label})
    return random.Random(f"{seed}:{label}").choice(others)


def agreement(true_verdicts: list[dict | None], flipped_verdicts: list[dict | None], rule: JudgeRule = JudgeRule()) -> dict:
    """How far the judge's correctness score follows people's labels: the seeds it accepts with their own label, the
    seeds it refuses with a wrong one, and their mean (balanced agreement; 0.5 is a judge that cannot tell)."""
    def share(verdicts, accepts: bool):
        parsed = [v for v in verdicts if v is not None]
        hits = sum((v["correctness"] >= rule.min_correctness) == accepts for v in parsed)
        return (round(hits / len(parsed), 4) if parsed else None), len(parsed)

    accepts_true, parsed_true = share(true_verdicts, True)
    refuses_flipped, parsed_flipped = share(flipped_verdicts, False)
    parts = [x for x in (accepts_true, refuses_flipped) if x is not None]
    return {"seeds_judged": len(true_verdicts), "verdicts_parsed": parsed_true + parsed_flipped,
            "accepts_true_labels": accepts_true, "refuses_flipped_labels": refuses_flipped,
            "balanced_agreement": round(sum(parts) / len(parts), 4) if len(parts) == 2 else None}
