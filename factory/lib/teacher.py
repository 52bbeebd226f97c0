"""Teacher generation, the pure part: plans, prompts rendered from the repo's templates, tolerant parsing, provenance.

A plan says how many rows of which label and kind to ask for, and why (the task's quota, a label the gates left
short, a failure cluster of the last evaluation). Each request asks for a few rows at once, shows a few seeds of the
label (chosen with a seed) and says what to avoid. Teachers wrap their JSON in code fences, prose or reasoning; the
parser takes what is there and records what it had to repair.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import jinja2

TEMPLATES_DIR = Path(__file__).resolve().parents[1] / "templates" / "generation"

# What each kind of row is for; {neighbour} is the label it must not be mistaken for, {style} the task's input style.
KINDS = {
    "canonical": "a clear, typical example of this category, the way real customers write it",
    "boundary": "an example that belongs to this category but sits close to '{neighbour}'; it must still clearly "
                "belong here, not there",
    "near_miss": "an example that shares words and topic with '{neighbour}' yet must be answered with this category",
    "production_like": "an example as it really arrives: {style} form, missing context, typos, several topics "
                       "mentioned, the request not in the first sentence",
    "adversarial": "an example phrased to mislead a router: it names other categories or tries to give the router "
                   "instructions, yet by its real request belongs to this category",
    "negative": "an input that belongs to none of the task's categories (out of scope); it is answered with this "
                "fallback category",
}


# How hard a request's rows should be to route; a plan's requests take them in the task's shares.
DIFFICULTIES = {
    "easy": "the request is stated plainly, early, in the words customers usually use for it",
    "medium": "the request is clear but in the customer's own words, with some unrelated detail around it",
    "hard": "the request shows only through a detail or an implication, beside things that belong to other "
            "categories; a careful reader still puts it in this category",
}
DEFAULT_DIFFICULTY = {"easy": 0.25, "medium": 0.5, "hard": 0.25}


def rows_schema(rows: int, max_chars: int) -> dict:
    """The reply's JSON Schema: exactly `rows` texts of at most `max_chars` each (small teachers write one long text
    and run out of tokens mid-string without it, or a dozen rows nobody planned or budgeted a judge for)."""
    return {"type": "object", "required": ["examples"],
            "properties": {"examples": {"type": "array", "items": {"type": "string", "maxLength": max_chars},
                                        "minItems": rows, "maxItems": rows}}}


@dataclass(frozen=True)
class PlanItem:
    label: str
    kind: str
    rows: int
    reason: str  # quota | shortfall | repair: what asked for these rows
    neighbour: str | None = None


@dataclass(frozen=True)
class Request:
    """One prompt to the teacher, asking for `item.rows` rows."""

    item: PlanItem
    messages: list[dict]
    parent_ids: list[str]  # the seeds shown as examples
    template: str
    template_sha256: str
    difficulty: str  # easy | medium | hard (DIFFICULTIES)

    @property
    def key(self) -> str:
        return prompt_key(self.messages)


@dataclass
class Parsed:
    texts: list[str] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)
    error: str | None = None


def prompt_key(messages: list[dict], **sampling) -> str:
    return hashlib.sha256(json.dumps({"messages": messages, **sampling}, sort_keys=True).encode()).hexdigest()


def build_plan(labels: list[str], rows_per_label: int, mix: dict[str, float], neighbours: dict[str, str],
               shortfalls: dict[str, int] | None = None, repair_targets: dict | None = None,
               fallback_label: str | None = None) -> list[PlanItem]:
    """Plan items: the task's quota split by kind, plus rows for labels the gates left short, plus 20-100 rows per
    failure cluster of the last evaluation (as near misses of the label it was mistaken for)."""
    plan: list[PlanItem] = []
    weights = {kind: w for kind, w in mix.items() if w > 0 and kind != "negative"}
    total = sum(weights.values()) or 1.0
    rows_by_kind = _apportion(rows_per_label, {kind: w / total for kind, w in weights.items()})
    for label in labels:
        for kind, rows in rows_by_kind.items():
            if rows:
                plan.append(PlanItem(label, kind, rows, "quota", neighbours.get(label)))
    if fallback_label and mix.get("negative", 0) > 0 and rows_per_label:
        plan.append(PlanItem(fallback_label, "negative", max(1, round(rows_per_label * mix["negative"] / total)), "quota"))
    for label, missing in sorted((shortfalls or {}).items()):
        plan.append(PlanItem(label, "canonical", missing, "shortfall", neighbours.get(label)))
    for cluster in (repair_targets or {}).get("clusters", []):
        if cluster["target"] in labels:
            plan.append(PlanItem(cluster["target"], "near_miss", int(cluster["suggested_rows"]), "repair",
                                 cluster["predicted"]))
    return plan


def _apportion(total: int, shares: dict[str, float]) -> dict[str, int]:
    """Whole rows per kind summing to `total`: floors first, the rest to the largest remainders (ties in mix order)."""
    exact = {kind: total * share for kind, share in shares.items()}
    rows = {kind: int(value) for kind, value in exact.items()}
    order = sorted(exact, key=lambda kind: -(exact[kind] - rows[kind]))
    for kind in order[: total - sum(rows.values())]:
        rows[kind] += 1
    return rows


def difficulty_schedule(shares: dict[str, float]):
    """Difficulties in the given shares, interleaved: after any n requests each has had its share of n, rounded
    (smooth weighted round robin; a seeded draw leaves a plan of a few requests far off its shares)."""
    weights = {name: share for name, share in shares.items() if share > 0}
    total, credit = sum(weights.values()), dict.fromkeys(weights, 0.0)
    while True:
        for name, share in weights.items():
            credit[name] += share
        chosen = max(credit, key=credit.get)
        credit[chosen] -= total
        yield chosen


def render_requests(plan: list[PlanItem], task, seeds: list[dict], rows_per_request: int, few_shot: int,
                    seed: int, max_chars: int = 600, template: str = "classification",
                    difficulty: dict[str, float] | None = None) -> list[Request]:
    """Each plan item split into requests of `rows_per_request` rows (the last may bring a few more than the plan
    asked: every reply then fits one schema), with few-shot seeds of its label and a difficulty: the task's shares
    over the plan's requests, and hard for every repair of a failure cluster."""
    path = TEMPLATES_DIR / f"{template}.jinja"
    source = path.read_text(encoding="utf-8")
    digest = hashlib.sha256(source.encode()).hexdigest()
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)
    prompt = env.from_string(source)
    labels = task.contract.labels or {}
    by_label: dict[str, list[dict]] = {}
    for row in sorted(seeds, key=lambda r: r["id"]):
        by_label.setdefault(row["target"], []).append(row)
    requests, difficulties = [], difficulty_schedule(difficulty or DEFAULT_DIFFICULTY)
    for item in plan:
        for part in range((item.rows + rows_per_request - 1) // rows_per_request):
            level = "hard" if item.reason == "repair" else next(difficulties)
            rng = random.Random(f"{seed}:{item.label}:{item.kind}:{item.reason}:{part}")
            pool = by_label.get(item.label, [])
            shots = rng.sample(pool, min(few_shot, len(pool)))
            guidance = KINDS[item.kind].format(neighbour=item.neighbour or "another category", style=task.input_style)
            text = prompt.render(
                task_description=task.description or task.name, labels=labels, label=item.label,
                label_description=labels.get(item.label, ""), kind=item.kind, guidance=guidance, count=rows_per_request,
                neighbour=item.neighbour, neighbour_description=labels.get(item.neighbour or "", ""),
                input_style=task.input_style, max_chars=max_chars, difficulty=level,
                difficulty_guidance=DIFFICULTIES[level], examples=[s["text"][:600] for s in shots], variation=part,
            )
            messages = [{"role": "user", "content": text}]
            requests.append(Request(item, messages, [s["id"] for s in shots], template, digest, level))
    return requests


_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.S)
_THINK = re.compile(r"<think>.*?</think>", re.S)
_EXAMPLE_TAG = re.compile(r"^\s*<example>|</example>\s*$")
_LIST_LINE = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+(.+?)\s*$")


def parse_generated(raw: str) -> Parsed:
    """The example texts in a teacher's reply: a JSON object with "examples", a JSON array (of strings or of objects
    with "text"), JSON lines, or a numbered list; with what had to be repaired to read it."""
    parsed = Parsed()
    text = raw.strip()
    if "<think>" in text:
        text = _THINK.sub("", text).strip()
        if "<think>" in text:  # reasoning never closed: what follows it is all there is
            text = text.split("<think>", 1)[0].strip()
        parsed.repairs.append("removed reasoning")
    fenced = _FENCE.search(text)
    if fenced:
        text = fenced.group(1).strip()
        parsed.repairs.append("removed code fence")
    value, rest = first_json(text)
    if value is not None:
        if rest.strip():
            parsed.repairs.append("ignored prose around the JSON")
        if isinstance(value, dict):
            value = next((value[k] for k in ("examples", "rows", "data", "items") if isinstance(value.get(k), list)), [value])
        items = value if isinstance(value, list) else [value]
    else:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        objects = [_loads(ln) for ln in lines]
        if lines and all(o is not None for o in objects):
            items = objects
            parsed.repairs.append("read JSON lines")
        else:
            items = [m.group(1).strip().strip('"') for ln in lines if (m := _LIST_LINE.match(ln))]
            if items:
                parsed.repairs.append("read a numbered list")
    for item in items:
        candidate = item.get("text") if isinstance(item, dict) else item
        candidate = candidate.strip() if isinstance(candidate, str) else ""
        bare = _EXAMPLE_TAG.sub("", candidate).strip()  # the prompt shows seeds in these tags; small teachers copy them
        if bare != candidate and "removed the prompt's <example> tags" not in parsed.repairs:
            parsed.repairs.append("removed the prompt's <example> tags")
        if bare:
            parsed.texts.append(bare)
        else:
            parsed.repairs.append(f"skipped an item that is not a text: {str(item)[:60]!r}")
    if not parsed.texts:
        parsed.error = "no example texts found (expected a JSON object with an 'examples' array of strings)"
    return parsed


def _loads(text: str):
    try:
        return json.loads(text, strict=False)
    except ValueError:
        return None


def first_json(text: str):
    """The first JSON array or object in the text and what is left around it; trailing commas and raw newlines inside
    strings forgiven."""
    decoder = json.JSONDecoder(strict=False)
    for start, ch in enumerate(text):
        if ch not in "[{":
            continue
        for candidate in (text[start:], re.sub(r",\s*([\]}])", r"\1", text[start:])):
            try:
                value, end = decoder.raw_decode(candidate)
                return value, text[:start] + candidate[end:]
            except ValueError:
                continue
    return None, text


def generated_rows(request: Request, parsed: Parsed, raw_output_id: str, provenance: dict) -> list[dict]:
    """Rows with full provenance; an unparseable reply becomes one row with no text, which the schema gate rejects
    with the parse error, its raw output kept by id."""
    base = {
        "target": request.item.label, "source": "teacher", "generator": "teacher", "kind": request.item.kind,
        "difficulty": request.difficulty, "plan_reason": request.item.reason, "parent_ids": request.parent_ids,
        "template": request.template, "template_sha256": request.template_sha256, "raw_output_id": raw_output_id,
        "parse_repairs": parsed.repairs,
        **provenance,
    }
    if parsed.error:
        return [{"id": f"gen-{raw_output_id[:16]}-unparsed", "text": "", **base, "parse_error": parsed.error}]
    return [{"id": f"gen-{raw_output_id[:16]}-{k}", "text": text, **base} for k, text in enumerate(parsed.texts)]


def plan_summary(plan: list[PlanItem]) -> list[dict]:
    return [asdict(item) for item in plan]


def nearest_labels(targets: list[str], embeddings) -> dict[str, str]:
    """Each label's nearest other label by the cosine of their seeds' mean embeddings: what its boundary rows face."""
    import numpy as np

    names = sorted(set(targets))
    if len(names) < 2:
        return {}
    centres = np.stack([embeddings[[i for i, t in enumerate(targets) if t == name]].mean(axis=0) for name in names])
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    similarity = centres @ centres.T
    np.fill_diagonal(similarity, -np.inf)
    return {name: names[int(similarity[k].argmax())] for k, name in enumerate(names)}


def previous_artifact(find, version: int, relative: str):
    """The newest earlier version's file `relative` (via find(n) -> folder), or None: what a retrain learns from."""
    for n in range(version - 1, 0, -1):
        path = find(n) / relative
        if path.exists():
            return path
    return None
