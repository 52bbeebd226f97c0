"""Quality gates: every candidate row is accepted or rejected by the first gate it fails.

accepted + rejected always equals the input; each rejection names its gate and reason.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from factory.lib.contracts import Contract, ContractError
from factory.lib.near_dups import NearCopyIndex, clusters, content_words, normalize, reworded, semantic_neighbours

HUMAN_SOURCES = frozenset({"seed", "import", "production"})  # rows a person wrote or labelled: quotas never trim them


@dataclass(frozen=True)
class GateConfig:
    min_chars: int = 8
    max_chars: int = 4000
    # Cosine with all-MiniLM-L6-v2. On Banking77's short questions 0.92 already flags a quarter of
    # the training rows as paraphrases of test rows; from 0.97 up they are near-copies (4%).
    semantic_duplicate_threshold: float = 0.97  # only across different parent families
    semantic_leakage_threshold: float = 0.97  # to any eval row
    # Cosine from which two texts with the same content words are one reworded: a leak when one is an eval row, one
    # cluster when both are candidates. On 10,000 Banking77 rows it finds 98% of planted rewordings and 96% of
    # reworded test rows (cosine 0.97 alone: 48% and 33%); it also calls 16% of the real rows copies of test rows
    # (7.5% before), most of them rewordings Banking77 holds across its splits.
    reworded_copy_threshold: float = 0.85
    # Jaccard of character 5-grams: 0.8 is a copy with a few words changed (a near copy, not a paraphrase).
    near_duplicate_threshold: float = 0.8
    leak_shingle_words: int = 6
    min_words: int = 2  # fewer distinct words: trivial
    max_input_tokens: int = 1024  # with the base model's tokenizer, when one is given
    max_label_share: float = 1.0  # generated rows of a label above this share of all rows are trimmed


def _shingles(text: str, size: int) -> set[str]:
    words = normalize(text).split()
    return {" ".join(words[i : i + size]) for i in range(len(words) - size + 1)}


def text_problem(row: dict) -> str | None:
    """Why a row's text cannot be read at all (the schema gate's reasons), or None."""
    text = row.get("text")
    if not isinstance(text, str) or not text.strip():
        return row.get("parse_error") or f"text must be a non-empty string, got {type(text).__name__}"
    if "\x00" in text:
        return "text contains a NUL byte"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "text is not valid Unicode (a lone surrogate: the source bytes were not UTF-8)"
    return None


def apply_gates(
    candidates: list[dict],
    contract: Contract,
    eval_texts: list[str],
    system_prompt: str,
    config: GateConfig = GateConfig(),
    embeddings: np.ndarray | None = None,
    eval_embeddings: np.ndarray | None = None,
    count_tokens: Callable[[str], int] | None = None,
) -> tuple[list[dict], list[dict]]:
    """Return (accepted, rejected). Embeddings, when given, are L2-normalised and row-aligned. Accepted rows carry
    `cluster`: rows linked by near copies or parentage share it, so a split keeps them on one side."""
    eval_norm = {normalize(t) for t in eval_texts}
    prompt_shingles = _shingles(system_prompt, config.leak_shingle_words)
    label_texts = {normalize(label) for label in getattr(contract, "labels", ())}
    problems = [text_problem(row) for row in candidates]
    texts = ["" if problem else row["text"] for row, problem in zip(candidates, problems)]
    targets_by_text: dict[str, set[str]] = {}
    for row, text in zip(candidates, texts):
        targets_by_text.setdefault(normalize(text), set()).add(str(row.get("target")))

    eval_copies = NearCopyIndex(eval_texts, config.near_duplicate_threshold).query(texts) if eval_texts else None
    leak_hits = duplicate_hits = None
    if embeddings is not None and len(candidates):
        words = [content_words(text) for text in texts]
        if eval_embeddings is not None and len(eval_embeddings):
            leak_hits = semantic_neighbours(embeddings, eval_embeddings,
                                            min(config.semantic_leakage_threshold, config.reworded_copy_threshold))
            eval_words = [content_words(text) for text in eval_texts]
        duplicate_hits = semantic_neighbours(embeddings, embeddings,
                                             min(config.semantic_duplicate_threshold, config.reworded_copy_threshold),
                                             skip_self=True)

    def semantic_leak(i: int) -> str | None:
        for j in leak_hits[i]:
            cosine = float(embeddings[i] @ eval_embeddings[j])
            if cosine >= config.semantic_leakage_threshold - 1e-6:
                return f"semantically equal to an eval row (cosine >= {config.semantic_leakage_threshold})"
            if cosine >= config.reworded_copy_threshold - 1e-6 and reworded(words[i], eval_words[j]):
                return (f"a reworded copy of an eval row (the same content words, cosine >= "
                        f"{config.reworded_copy_threshold}): {eval_texts[j][:80]!r}")
        return None

    # A leaked row leaks its whole family: variants of an eval row are eval rows in disguise.
    leaked: dict[int, str] = {}
    for i, text in enumerate(texts):
        if text and normalize(text) in eval_norm:
            leaked[i] = "the same text is in an eval set"
        elif eval_copies is not None and eval_copies[i]:
            leaked[i] = (f"a near copy of an eval row (character 5-gram Jaccard >= {config.near_duplicate_threshold}): "
                         f"{eval_texts[eval_copies[i][0]][:80]!r}")
        elif leak_hits is not None and (reason := semantic_leak(i)):
            leaked[i] = reason
    leaked_ids = {candidates[i].get("id") for i in leaked}

    accepted_index: list[int] = []
    accepted_set: set[int] = set()
    rejected: list[dict] = []
    first_with_text: dict[str, str] = {}

    def reject(row: dict, gate: str, reason: str, **extra) -> None:
        rejected.append({**row, "gate": gate, "reason": reason, **extra})

    for i, row in enumerate(candidates):
        text, target = row.get("text"), row.get("target")
        if problems[i]:
            reject(row, "schema", problems[i])
            continue
        if not isinstance(target, str) or not target:
            reject(row, "schema", f"target must be a non-empty string, got {type(target).__name__}")
            continue
        try:
            contract.canonical(target)
        except ContractError as exc:
            reject(row, "contract", str(exc))
            continue
        if isinstance(row.get("judge"), dict) and row["judge"].get("passed") is False:
            reject(row, "judge", row["judge"]["reason"])
            continue
        if not config.min_chars <= len(text) <= config.max_chars:
            reject(row, "length", f"{len(text)} characters, outside [{config.min_chars}, {config.max_chars}]")
            continue
        key = normalize(text)
        if not any(ch.isalpha() for ch in key) or len(set(key.split())) < config.min_words or key in label_texts:
            reject(row, "trivial", f"fewer than {config.min_words} distinct words, no letters, or a label name")
            continue
        if count_tokens is not None and (tokens := count_tokens(text)) > config.max_input_tokens:
            reject(row, "length", f"{tokens} tokens with the base model's tokenizer, over {config.max_input_tokens}")
            continue
        if prompt_shingles & _shingles(text, config.leak_shingle_words):
            reject(row, "leaked_instructions", "contains a passage of the system prompt")
            continue
        if len(targets_by_text[key]) > 1:
            reject(row, "label_conflict", f"the same text carries targets {sorted(targets_by_text[key])}")
            continue
        if i in leaked:
            reject(row, "eval_leakage", leaked[i])
            continue
        if row.get("parent_id") in leaked_ids:
            reject(row, "eval_leakage", f"derived from {row['parent_id']}, which is in an eval set")
            continue
        if key in first_with_text:
            reject(row, "exact_duplicate", "same text as an accepted row", duplicate_of=first_with_text[key])
            continue
        if duplicate_hits is not None:
            family = row.get("parent_id") or row["id"]
            twin = next(
                (j for j in duplicate_hits[i] if j in accepted_set and (candidates[j].get("parent_id") or candidates[j]["id"]) != family
                 and float(embeddings[i] @ embeddings[j]) >= config.semantic_duplicate_threshold - 1e-6),
                None,
            )
            if twin is not None:
                reject(row, "semantic_duplicate", f"cosine >= {config.semantic_duplicate_threshold} to an accepted row",
                       duplicate_of=candidates[twin]["id"])
                continue
        first_with_text[key] = row["id"]
        accepted_set.add(i)
        accepted_index.append(i)
    accepted = [candidates[i] for i in accepted_index]
    accepted, trimmed = apply_quotas(accepted, config.max_label_share)
    rejected += trimmed
    rewordings = [] if duplicate_hits is None else [
        (candidates[i]["id"], candidates[j]["id"]) for i in accepted_index for j in duplicate_hits[i]
        if j in accepted_set and reworded(words[i], words[j])
        and float(embeddings[i] @ embeddings[j]) >= config.reworded_copy_threshold - 1e-6]
    return with_clusters(accepted, config.near_duplicate_threshold, rewordings), rejected


def with_clusters(rows: list[dict], threshold: float, linked: Sequence[tuple[str, str]] = ()) -> list[dict]:
    """Each row with `cluster`: the smallest id among the rows linked to it by near copies, parentage or `linked`
    (pairs of ids: reworded copies)."""
    position = {row["id"]: i for i, row in enumerate(rows)}
    pairs = NearCopyIndex([row["text"] for row in rows], threshold).pairs() if rows else []
    pairs += [(position[row["parent_id"]], i) for i, row in enumerate(rows) if row.get("parent_id") in position]
    pairs += [(position[a], position[b]) for a, b in linked if a in position and b in position]
    labels = clusters(len(rows), pairs)
    smallest: dict[int, str] = {}
    for row, label in zip(rows, labels):
        smallest[label] = min(smallest.get(label, row["id"]), row["id"])
    return [{**row, "cluster": smallest[label]} for row, label in zip(rows, labels)]


def apply_quotas(rows: list[dict], max_share: float) -> tuple[list[dict], list[dict]]:
    """Trim generated rows of labels over `max_share` of all rows (the last ones first); rows people wrote stay."""
    if max_share >= 1.0 or not rows:
        return rows, []
    cap = max(1, int(max_share * len(rows)))
    counts = Counter(row["target"] for row in rows)
    drop: set[int] = set()
    for label, count in counts.items():
        excess = count - cap
        for i in reversed(range(len(rows))):
            if excess <= 0:
                break
            if rows[i]["target"] == label and rows[i].get("source") not in HUMAN_SOURCES:
                drop.add(i)
                excess -= 1
    trimmed = [{**rows[i], "gate": "quota", "reason": f"label {rows[i]['target']!r} over {max_share:.0%} of the rows"}
               for i in sorted(drop)]
    return [row for i, row in enumerate(rows) if i not in drop], trimmed


def label_shortfalls(rows: list[dict], labels, min_share: float) -> dict[str, int]:
    """Rows each label lacks to reach `min_share` of all rows: what the next generation plan asks the teacher for."""
    counts = Counter(row["target"] for row in rows)
    need = int(np.ceil(min_share * len(rows)))
    return {label: need - counts[label] for label in labels if counts[label] < need}
