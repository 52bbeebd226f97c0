"""Quality gates: every candidate row is accepted or rejected by the first gate it fails.

accepted + rejected always equals the input; each rejection names its gate and reason.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import numpy as np

from factory.lib.contracts import Contract, ContractError


@dataclass(frozen=True)
class GateConfig:
    min_chars: int = 8
    max_chars: int = 4000
    # Cosine with all-MiniLM-L6-v2. On Banking77's short questions 0.92 already flags a quarter of
    # the training rows as paraphrases of test rows; from 0.97 up they are near-copies (4%).
    semantic_duplicate_threshold: float = 0.97  # only across different parent families
    semantic_leakage_threshold: float = 0.97  # to any eval row
    leak_shingle_words: int = 6


def normalize(text: str) -> str:
    """Case, accents, punctuation and spacing folded: what 'the same text' means for exact gates."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"[^\w\s]", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def _shingles(text: str, size: int) -> set[str]:
    words = normalize(text).split()
    return {" ".join(words[i : i + size]) for i in range(len(words) - size + 1)}


def _neighbours(query: np.ndarray, corpus: np.ndarray, threshold: float, chunk: int = 2048) -> list[np.ndarray]:
    """Indices in corpus with cosine >= threshold for each query row, in chunks (no n x n matrix)."""
    out: list[np.ndarray] = []
    for start in range(0, len(query), chunk):
        sims = query[start : start + chunk] @ corpus.T
        out.extend(np.nonzero(row >= threshold)[0] for row in sims)
    return out


def apply_gates(
    candidates: list[dict],
    contract: Contract,
    eval_texts: list[str],
    system_prompt: str,
    config: GateConfig = GateConfig(),
    embeddings: np.ndarray | None = None,
    eval_embeddings: np.ndarray | None = None,
) -> tuple[list[dict], list[dict]]:
    """Return (accepted, rejected). Embeddings, when given, are L2-normalised and row-aligned."""
    eval_norm = {normalize(t) for t in eval_texts}
    prompt_shingles = _shingles(system_prompt, config.leak_shingle_words)
    targets_by_text: dict[str, set[str]] = {}
    for row in candidates:
        if isinstance(row.get("text"), str):
            targets_by_text.setdefault(normalize(row["text"]), set()).add(str(row.get("target")))

    leak_hits = duplicate_hits = None
    if embeddings is not None and len(candidates):
        if eval_embeddings is not None and len(eval_embeddings):
            leak_hits = _neighbours(embeddings, eval_embeddings, config.semantic_leakage_threshold)
        duplicate_hits = _neighbours(embeddings, embeddings, config.semantic_duplicate_threshold)

    # A leaked row leaks its whole family: variants of an eval row are eval rows in disguise.
    leaked: dict[int, str] = {}
    for i, row in enumerate(candidates):
        if isinstance(row.get("text"), str) and normalize(row["text"]) in eval_norm:
            leaked[i] = "the same text is in an eval set"
        elif leak_hits is not None and len(leak_hits[i]):
            leaked[i] = f"semantically equal to an eval row (cosine >= {config.semantic_leakage_threshold})"
    leaked_ids = {candidates[i].get("id") for i in leaked}

    accepted, rejected = [], []
    accepted_index: set[int] = set()
    first_with_text: dict[str, str] = {}

    def reject(row: dict, gate: str, reason: str, **extra) -> None:
        rejected.append({**row, "gate": gate, "reason": reason, **extra})

    for i, row in enumerate(candidates):
        text, target = row.get("text"), row.get("target")
        if not isinstance(text, str) or not text.strip() or not isinstance(target, str) or not target:
            reject(row, "schema", "text and target must be non-empty strings")
            continue
        try:
            contract.canonical(target)
        except ContractError as exc:
            reject(row, "contract", str(exc))
            continue
        if not config.min_chars <= len(text) <= config.max_chars:
            reject(row, "length", f"{len(text)} characters, outside [{config.min_chars}, {config.max_chars}]")
            continue
        if prompt_shingles & _shingles(text, config.leak_shingle_words):
            reject(row, "leaked_instructions", "contains a passage of the system prompt")
            continue
        key = normalize(text)
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
                (j for j in duplicate_hits[i] if j in accepted_index and (candidates[j].get("parent_id") or candidates[j]["id"]) != family),
                None,
            )
            if twin is not None:
                reject(row, "semantic_duplicate", f"cosine >= {config.semantic_duplicate_threshold} to an accepted row",
                       duplicate_of=candidates[twin]["id"])
                continue
        first_with_text[key] = row["id"]
        accepted_index.add(i)
        accepted.append(row)
    return accepted, rejected
