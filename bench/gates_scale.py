"""Gates at scale: the quality gates on 10,000 and 100,000 Banking77 rows with planted duplicates, leaks and label flips.

    .venv/bin/python bench/gates_scale.py --rows 10000 --seed 0 --out bench/results
    .venv/bin/python bench/gates_scale.py --rows 100000 --seed 0 --out bench/results   # after 10000: growth is computed
    .venv/bin/python bench/gates_scale.py --rows 600 --eval-rows 300 --no-count-tokens --out /tmp/gates   # a smoke run

The phases run as `accepted_examples` chains them, each timed on its own with its own peak memory:
PII scrubbing (`scrub_rows`), encoding every candidate and eval text in one call of the `Embedder` resource
(MiniLM; the model load is timed apart), `apply_gates` with those embeddings and the base model's token counter, then
`likely_mislabels` on the accepted rows (every row has source "import", so every row is checked). Peak memory is the
process's VmHWM with the high-water mark reset before each phase (`/proc/self/clear_refs`), so it is the phase's own
peak resident set, which includes whatever earlier phases left resident (the MiniLM weights among them).

Rows. The eval set is Banking77's test split (3,080 rows, or a seeded sample of `--eval-rows`). Candidates are
Banking77 training rows without the ones whose text is already in the eval set or repeated (normalised text). Above
the ~10k real rows, synthetic rows are added, each two real rows of the same label joined by a filler ("Hi, <a> Also,
<b>", openers and joiners drawn from short lists): every unordered pair at most once and the two parts within 2x of
each other's length, so a synthetic row shares at most ~2/3 of its character 5-grams with a real row or another
synthetic row. The few that are still near copies (Jaccard >= 0.8; two parts that are near copies of each other make
them) are found with MinHash LSH at a low threshold, confirmed by exact Jaccard, dropped and made anew.
(`--real-rows` caps the real rows, so the synthetic rows can be tried at small sizes.)
Planted, with the seed (1% or 2% of --rows a kind), each copy under a new id and with no parent_id (the semantic
gate exempts a family); an original is used once, an eval row at most once a kind:
  exact_duplicate       a candidate's text with its case and punctuation changed (normalised text equal)
  near_duplicate        one character or short word edited, character 5-gram Jaccard >= 0.8 to the original
  paraphrase_duplicate  trivial rewordings ("my" -> "the", "I'm" -> "I am", "please"...) until Jaccard < 0.8, so only
                        the semantic gates can catch it: cosine >= 0.97, or the same content words from cosine 0.88
  exact_leak, near_leak, paraphrase_leak   the same three made from eval rows
  label_flip            a clean candidate's label changed to another, for `likely_mislabels`
A duplicate is caught when the accepted rows do not hold it and its original as two independent rows: one of them was
rejected, or both share a `cluster` (near copies are not rejected: the split keeps a cluster on one side). A leak is
caught when the planted row was rejected. Recall is reported over all planted rows and over the ones the gates'
thresholds can reach (Jaccard or cosine at the threshold, or a rewording's content words and cosine); false positives are the clean rows each gate rejected
(Banking77 itself holds near paraphrases across train and test, so some are real).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import random
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import write_result  # noqa: E402

from factory.lib import gates, near_dups, pii  # noqa: E402  (looked up at each call, so a test can replace them)
from factory.lib.contracts import ClassificationContract  # noqa: E402
from factory.lib.files import peak_rss_mib, read_jsonl  # noqa: E402
from factory.lib.mislabels import likely_mislabels  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "banking77"
PLANT_SHARES = {  # of --rows, each kind
    "exact_duplicate": 0.02, "near_duplicate": 0.02, "paraphrase_duplicate": 0.02,
    "exact_leak": 0.01, "near_leak": 0.01, "paraphrase_leak": 0.01,
}
LABEL_FLIP_SHARE = 0.02  # of --rows, among the clean rows
TARGET_RATIO = 1.5  # all gates against encoding the same rows
TARGET_GROWTH = 12.0  # 10x the rows
TARGET_RECALL = 0.95  # planted duplicates and leaks
SYSTEM_PROMPT = "You are a bank's support assistant. Classify the customer's message into exactly one of the 77 intents."
LEAK_REASONS = {"the same text": "same text", "a near copy": "near copy", "semantically": "semantic",
                "a reworded copy": "reworded", "derived from": "parent"}
EXAMPLES_KEPT = 5

OPENERS = ["", "", "Hi, ", "Hello. ", "Quick question: ", "Hey there. ", "Good morning. "]
JOINERS = ["Also, ", "And ", "Plus, ", "On top of that, ", "Another thing: ", "Besides, "]
# Rewordings that keep the meaning. Each group is tried once; its first pattern that matches is used.
REWORDINGS = [
    [(r"\bmy\b", "the")],
    [(r"\bI'm\b", "I am"), (r"\bI am\b", "I'm")],
    [(r"\bI've\b", "I have"), (r"\bI have\b", "I've")],
    [(r"\b(has|have|is|are|was|were|do|does|did|could|would|should)n't\b", r"\1 not"),
     (r"\b(has|have|is|are|was|were|do|does|did|could|would|should) not\b", r"\1n't")],
    [(r"\bcan't\b", "cannot"), (r"\bcannot\b", "can't"), (r"\bwon't\b", "will not")],
    [(r"\bcan I\b", "could I"), (r"\bcan you\b", "could you"), (r"\bhow do I\b", "how can I")],
    [(r"\bwant to\b", "would like to"), (r"\bneed to\b", "have to")],
    [(r"\bwhat's\b", "what is"), (r"\bwhat is\b", "what's"), (r"\bit's\b", "it is"), (r"\bit is\b", "it's")],
    [(r"^", "Please, ")],
    [(r"[?.!]*\s*$", " please?")],
    [(r"^", "Hi, ")],
]
FILLER_WORDS = ("the", "a", "really", "please", "just", "still", "my")


# --- rows -------------------------------------------------------------------------------------------------------

def _norm(text: str) -> str:
    return near_dups.normalize(text)


def _jaccard(a: str, b: str) -> float:
    return round(near_dups.jaccard(near_dups.shingles(a), near_dups.shingles(b)), 4)


def synthetic_rows(pool: list[dict], count: int, rng: random.Random, taken: set[str], near_threshold: float) -> list[dict]:
    """`count` rows, each two pool rows of one label joined by a filler; every unordered pair at most once, and none a
    near copy of a pool row or of another synthetic row (two parts that are near copies of each other can make one)."""
    by_label: dict[str, list[dict]] = defaultdict(list)
    for row in pool:
        by_label[row["label"]].append(row)
    used_pairs: set[tuple[str, str]] = set()
    out: list[dict] = []
    misses = 0
    while len(out) < count:
        a = rng.choice(pool)
        b = rng.choice(by_label[a["label"]])
        pair = tuple(sorted((a["text"], b["text"])))
        if a is b or pair in used_pairs or not 0.5 <= len(a["text"]) / len(b["text"]) <= 2.0:
            misses += 1
            if misses > 50 * count + 1000:
                raise SystemExit(f"only {len(out)} of {count} synthetic rows: too few real rows ({len(pool)}) to pair; "
                                 "raise --real-rows or lower --rows")
            continue
        first = a["text"].strip()
        first += "" if first[-1] in ".?!" else "."
        second = b["text"].strip()
        second = second if second.startswith(("I ", "I'")) else second[0].lower() + second[1:]
        text = f"{rng.choice(OPENERS)}{first} {rng.choice(JOINERS)}{second}"
        if _norm(text) in taken:
            continue
        used_pairs.add(pair)
        taken.add(_norm(text))
        out.append({"text": text, "label": a["label"], "origin": "synthetic"})
        if len(out) == count:  # drop the near copies (confirmed by exact Jaccard) and make others in their place
            # NearCopyIndex searches below its threshold itself and confirms each pair by exact Jaccard.
            index = near_dups.NearCopyIndex([r["text"] for r in pool + out], near_threshold)
            near = {j - len(pool) for i, j in index.pairs() if j >= len(pool)}
            out = [row for k, row in enumerate(out) if k not in near]
    return out


def exact_variant(text: str, rng: random.Random) -> str:
    """The same normalised text, written differently: case and punctuation only."""
    stem = text.strip().rstrip("?.!")
    options = [stem.lower() + " ?!", stem.upper() + ".", "  " + stem.swapcase() + "...", stem + " !!"]
    variant = rng.choice([o for o in options if o != text] or [text + "!"])
    assert _norm(variant) == _norm(text), (text, variant)
    return variant


def _edits(text: str, rng: random.Random):
    """Small edits of one character or one short word, in random order."""
    words = list(re.finditer(r"[A-Za-z]+", text))
    long_words = [m for m in words if len(m.group()) >= 4]
    kinds = ["swap", "drop_char", "double", "drop_word", "digit"]
    rng.shuffle(kinds)
    for kind in kinds * 2:
        if kind in ("swap", "drop_char", "double") and long_words:
            m = rng.choice(long_words)
            i = rng.randrange(m.start() + 1, m.end() - 2)
            if kind == "swap":
                yield text[:i] + text[i + 1] + text[i] + text[i + 2:]
            elif kind == "drop_char":
                yield text[:i] + text[i + 1:]
            else:
                yield text[:i] + text[i] + text[i:]
        elif kind == "drop_word":
            fillers = [m for m in words if m.group().lower() in FILLER_WORDS]
            if fillers:
                m = rng.choice(fillers)
                yield (text[:m.start()] + text[m.end():].lstrip(" ")).strip()
        elif kind == "digit":
            digits = [m for m in re.finditer(r"\d", text)]
            if digits:
                m = rng.choice(digits)
                yield text[:m.start()] + str((int(m.group()) + 1 + rng.randrange(8)) % 10) + text[m.end():]


def near_variant(text: str, rng: random.Random, threshold: float) -> str | None:
    """A near copy: Jaccard of character 5-grams at least `threshold`, normalised text different; None if no edit keeps it."""
    for variant in _edits(text, rng):
        if _norm(variant) != _norm(text) and _jaccard(variant, text) >= threshold:
            return variant
    return None


def paraphrase_variant(text: str, rng: random.Random, threshold: float) -> str | None:
    """Trivial rewordings applied one group at a time until the Jaccard falls under `threshold`; None if it never does."""
    groups = list(REWORDINGS)
    rng.shuffle(groups)
    variant = text
    for group in groups:
        for pattern, replacement in group:
            changed = re.sub(pattern, lambda m, r=replacement: _keep_case(m, r), variant, count=1, flags=re.IGNORECASE)
            if changed != variant:
                variant = changed
                break
        if _norm(variant) != _norm(text) and _jaccard(variant, text) < threshold:
            return variant
    return None


def _keep_case(match: re.Match, replacement: str) -> str:
    out = match.expand(replacement)
    if match.group() and match.group()[0].isupper() and out:
        out = out[0].upper() + out[1:]
    elif match.group() and match.group()[0].islower() and out and not out.startswith("I"):
        out = out[0].lower() + out[1:]
    return out


def plant_counts(rows: int) -> dict[str, int]:
    return {kind: max(1, round(share * rows)) for kind, share in PLANT_SHARES.items()}


def build(data: Path, rows: int, seed: int, eval_rows: int | None, real_rows: int | None, near_threshold: float):
    """Candidates (shuffled, ids r000000...), eval texts, and what was planted where."""
    rng = random.Random(seed)
    evals = read_jsonl(data / "test.jsonl")
    if eval_rows is not None and eval_rows < len(evals):
        evals = rng.sample(evals, eval_rows)
    eval_norm = {_norm(r["text"]) for r in evals}
    taken, pool = set(eval_norm), []
    for row in read_jsonl(data / "train.jsonl"):
        key = _norm(row["text"])
        if key not in taken:
            taken.add(key)
            pool.append({"text": row["text"], "label": row["label"], "origin": "banking77_train"})
    rng.shuffle(pool)
    if real_rows is not None:
        pool = pool[:real_rows]
    counts = plant_counts(rows)
    n_clean = rows - sum(counts.values())
    clean = pool[:n_clean] if n_clean <= len(pool) else pool + synthetic_rows(pool, n_clean - len(pool), rng, taken, near_threshold)
    for k, row in enumerate(clean):
        row["tmp"] = f"c{k}"

    planted, plants = [], []
    originals = list(range(len(clean)))
    rng.shuffle(originals)
    cursor = 0
    makers = {"exact": lambda t: exact_variant(t, rng), "near": lambda t: near_variant(t, rng, near_threshold),
              "paraphrase": lambda t: paraphrase_variant(t, rng, near_threshold)}
    for kind in ("exact_duplicate", "near_duplicate", "paraphrase_duplicate"):
        made = 0
        while made < counts[kind] and cursor < len(originals):
            source = clean[originals[cursor]]
            cursor += 1
            text = makers[kind.split("_")[0]](source["text"])
            if text is None or (_norm(text) in taken and kind != "exact_duplicate"):
                continue
            taken.add(_norm(text))
            tmp = f"p{len(planted)}"
            planted.append({"text": text, "label": source["label"], "origin": kind, "tmp": tmp})
            plants.append({"kind": kind, "tmp": tmp, "original_tmp": source["tmp"], "jaccard": _jaccard(text, source["text"])})
            made += 1
    used = set(originals[:cursor])
    eligible = [i for i in range(len(evals)) if len(evals[i]["text"]) >= gates.GateConfig.min_chars]
    for kind in ("exact_leak", "near_leak", "paraphrase_leak"):  # an eval row leaks at most once a kind
        eval_order = rng.sample(eligible, len(eligible))
        made = eval_cursor = 0
        while made < counts[kind] and eval_cursor < len(eval_order):
            e = eval_order[eval_cursor]
            eval_cursor += 1
            text = makers[kind.split("_")[0]](evals[e]["text"])
            if text is None or (_norm(text) in taken and kind != "exact_leak"):
                continue
            taken.add(_norm(text))
            tmp = f"p{len(planted)}"
            planted.append({"text": text, "label": evals[e]["label"], "origin": kind, "tmp": tmp})
            plants.append({"kind": kind, "tmp": tmp, "eval_index": e, "jaccard": _jaccard(text, evals[e]["text"])})
            made += 1

    labels = sorted({r["label"] for r in read_jsonl(data / "train.jsonl")})
    flippable = [i for i in range(len(clean)) if i not in used]
    flips = {}
    for i in rng.sample(flippable, min(len(flippable), round(LABEL_FLIP_SHARE * rows))):
        true = clean[i]["label"]
        clean[i]["label"] = rng.choice([lab for lab in labels if lab != true])
        flips[clean[i]["tmp"]] = true

    everything = clean + planted
    rng.shuffle(everything)
    ids = {row["tmp"]: f"r{k:06d}" for k, row in enumerate(everything)}
    candidates = [{"id": ids[r["tmp"]], "text": r["text"], "target": r["label"], "source": "import"} for r in everything]
    origin = {ids[r["tmp"]]: r["origin"] for r in everything}
    for plant in plants:
        plant["id"] = ids[plant.pop("tmp")]
        if "original_tmp" in plant:
            plant["original"] = ids[plant.pop("original_tmp")]
    flips = {ids[tmp]: true for tmp, true in flips.items()}
    return candidates, [r["text"] for r in evals], labels, plants, flips, origin


# --- phases -----------------------------------------------------------------------------------------------------

def _rss_mib() -> float | None:
    status = Path("/proc/self/status")
    if not status.exists():
        return None
    line = next((x for x in status.read_text().splitlines() if x.startswith("VmRSS:")), None)
    return round(int(line.split()[1]) / 1024, 1) if line else None


def _reset_peak() -> bool:
    """Reset the kernel's high-water mark of resident memory to now (Linux >= 4.0), so VmHWM is this phase's peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def timed(phases: dict, name: str, rows: int, fn):
    rss_before = _rss_mib()
    reset = _reset_peak()
    started = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - started
    phases[name] = {"rows": rows, "seconds": round(seconds, 3), "rows_per_s": round(rows / seconds, 1) if seconds else None,
                    "rss_before_mib": rss_before, "peak_rss_mib": peak_rss_mib(),
                    "peak_is": "this phase's peak" if reset else "the process's peak so far"}
    print(f"{name}: {rows} rows, {seconds:.2f} s, peak RSS {phases[name]['peak_rss_mib']} MiB", flush=True)
    return out


# --- scoring ----------------------------------------------------------------------------------------------------

def _outcome(rejected_row: dict) -> str:
    """The gate, and for eval leakage which of its tests: the same text, a near copy, semantic, or the parent's."""
    gate, reason = rejected_row["gate"], rejected_row["reason"]
    if gate != "eval_leakage":
        return gate
    how = next((name for prefix, name in LEAK_REASONS.items() if reason.startswith(prefix)), "other")
    return f"{gate} ({how})"


def score(candidates, eval_texts, plants, flips, origin, accepted, rejected, flagged, embeddings, eval_embeddings,
          config: gates.GateConfig) -> dict:
    position = {row["id"]: i for i, row in enumerate(candidates)}
    cluster = {row["id"]: row["cluster"] for row in accepted}
    gate_of = {row["id"]: _outcome(row) for row in rejected}
    per_kind: dict[str, dict] = {}
    examples: dict[str, list] = defaultdict(list)
    for plant in plants:
        kind, pid = plant["kind"], plant["id"]
        i = position[pid]
        if "original" in plant:
            oid = plant["original"]
            cosine = float(embeddings[i] @ embeddings[position[oid]]) if embeddings is not None else None
            reach_cos = config.semantic_duplicate_threshold
            if pid in cluster and oid in cluster:
                outcome = "same_cluster" if cluster[pid] == cluster[oid] else "missed"
            else:
                outcome = gate_of.get(pid) or gate_of.get(oid)
            other = candidates[position[oid]]["text"]
        else:
            cosine = float(embeddings[i] @ eval_embeddings[plant["eval_index"]]) if embeddings is not None else None
            reach_cos = config.semantic_leakage_threshold
            outcome = gate_of.get(pid, "missed")
            other = eval_texts[plant["eval_index"]]
        reachable = (plant["jaccard"] >= config.near_duplicate_threshold or _norm(candidates[i]["text"]) == _norm(other)
                     or (cosine is not None and cosine >= reach_cos - 1e-6)
                     or (cosine is not None and cosine >= config.reworded_copy_threshold - 1e-6
                         and near_dups.reworded(near_dups.content_words(candidates[i]["text"]), near_dups.content_words(other))))
        m = per_kind.setdefault(kind, {"planted": 0, "caught": 0, "by": Counter(), "reachable": 0, "reachable_caught": 0,
                                       "cosines": [], "jaccards": []})
        caught = outcome != "missed"
        m["planted"] += 1
        m["caught"] += caught
        m["by"][outcome] += 1
        m["reachable"] += reachable
        m["reachable_caught"] += reachable and caught
        m["jaccards"].append(plant["jaccard"])
        if cosine is not None:
            m["cosines"].append(cosine)
        if len(examples[kind]) < EXAMPLES_KEPT:
            examples[kind].append({"original": other, "planted": candidates[i]["text"], "jaccard": plant["jaccard"],
                                   "cosine": None if cosine is None else round(cosine, 4), "outcome": outcome})
    for kind, m in per_kind.items():
        cosines, jaccards = m.pop("cosines"), m.pop("jaccards")
        threshold = config.semantic_leakage_threshold if kind.endswith("leak") else config.semantic_duplicate_threshold
        m |= {"recall": round(m["caught"] / m["planted"], 4),
              "recall_reachable": round(m["reachable_caught"] / m["reachable"], 4) if m["reachable"] else None,
              "by": dict(m["by"]), "jaccard_mean": round(float(np.mean(jaccards)), 4),
              "cosine_mean": round(float(np.mean(cosines)), 4) if cosines else None,
              "cosine_at_threshold_share": round(float(np.mean(np.array(cosines) >= threshold - 1e-6)), 4) if cosines else None}

    planted_ids = {p["id"] for p in plants} | {p["original"] for p in plants if "original" in p}
    clean = [row["id"] for row in candidates if row["id"] not in planted_ids]
    clean_rejected = Counter(gate_of[i].split(" ")[0] for i in clean if i in gate_of)
    clean_leak_tests = Counter(gate_of[i] for i in clean if i in gate_of and gate_of[i].startswith("eval_leakage"))
    cluster_size = Counter(cluster.values())
    clean_clustered = sum(1 for i in clean if i in cluster and cluster_size[cluster[i]] > 1)
    false_positives = {"clean_rows": len(clean), "rejected_by_gate": dict(clean_rejected),
                       "rejected_share": {g: round(n / len(clean), 4) for g, n in clean_rejected.items()},
                       "eval_leakage_by_test": dict(clean_leak_tests), "accepted_in_a_shared_cluster": clean_clustered}

    flipped = set(flips)
    flipped_accepted = flipped & set(cluster)
    flagged_ids = set(flagged)
    hits = flagged_ids & flipped
    mislabels = {"flipped": len(flipped), "flipped_accepted": len(flipped_accepted), "flagged": len(flagged_ids),
                 "flagged_flipped": len(hits),
                 "precision": round(len(hits) / len(flagged_ids), 4) if flagged_ids else None,
                 "recall": round(len(hits) / len(flipped_accepted), 4) if flipped_accepted else None,
                 "recall_of_all_flipped": round(len(hits) / len(flipped), 4) if flipped else None,
                 "suggested_the_true_label": round(sum(flagged[i] == flips[i] for i in hits) / len(hits), 4) if hits else None,
                 "flagged_by_origin": dict(Counter(origin[i] if i not in flipped else "label_flip" for i in flagged_ids))}
    return {"planted": per_kind, "false_positives": false_positives, "mislabels": mislabels, "examples": dict(examples)}


# --- main -------------------------------------------------------------------------------------------------------

def table(result: dict) -> str:
    lines = ["| phase | rows | seconds | rows/s | peak RSS MiB |", "|---|---|---|---|---|"]
    for name, p in result["phases"].items():
        lines.append(f"| {name} | {p['rows']} | {p['seconds']:.2f} | {p['rows_per_s']} | {p['peak_rss_mib']} |")
    lines += ["", "| planted | rows | caught | recall | reachable | recall reachable | cosine >= threshold | outcomes |",
              "|---|---|---|---|---|---|---|---|"]
    for kind, m in result["planted"].items():
        how = ", ".join(f"{k} {v}" for k, v in sorted(m["by"].items(), key=lambda kv: -kv[1]))
        lines.append(f"| {kind} | {m['planted']} | {m['caught']} | {m['recall']} | {m['reachable']} | {m['recall_reachable']} | "
                     f"{m['cosine_at_threshold_share']} | {how} |")
    mis, r = result["mislabels"], result["ratios"]
    lines += ["", f"Mislabels: precision {mis['precision']}, recall {mis['recall']} ({mis['flagged']} flagged, "
                  f"{mis['flipped_accepted']} flipped rows accepted). All gates / encoding: {r['gates_vs_encoding']} "
                  f"(with PII {r['gates_with_pii_vs_encoding']}; target {TARGET_RATIO})."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10000, help="candidate rows, planted ones included")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=str(DATA), help="folder with Banking77's train.jsonl and test.jsonl")
    parser.add_argument("--eval-rows", type=int, help="a seeded sample of the test rows as the eval set (default: all)")
    parser.add_argument("--real-rows", type=int, help="use at most this many real training rows; synthetic rows fill the rest")
    parser.add_argument("--count-tokens", action=argparse.BooleanOptionalAction, default=True,
                        help="the token-length gate with the base model's tokenizer (as the asset runs it)")
    parser.add_argument("--base-model", default="smollm2-135m")
    parser.add_argument("--cache", default="data/cache", help="where the dequantized base model is (built there once)")
    parser.add_argument("--near-threshold", type=float, default=gates.GateConfig.near_duplicate_threshold,
                        help="character 5-gram Jaccard of near copies (1.01 turns the near-copy gates off)")
    parser.add_argument("--semantic-threshold", type=float, default=gates.GateConfig.semantic_duplicate_threshold,
                        help="cosine of semantic duplicates and leaks (1.01 turns the semantic gates off)")
    parser.add_argument("--reworded-threshold", type=float, default=gates.GateConfig.reworded_copy_threshold,
                        help="cosine from which rows with the same content words are reworded copies (1.01: off)")
    parser.add_argument("--name", help="result name (default: gates_scale_<rows>, and growth against gates_scale_<rows/10> "
                                       "when that result is in the same folder)")
    parser.add_argument("--out", default=None, help="folder for the result (default: bench/results)")
    args = parser.parse_args(argv)

    from factory.integrations.resources import Embedder

    config = gates.GateConfig(near_duplicate_threshold=args.near_threshold, semantic_duplicate_threshold=args.semantic_threshold,
                              semantic_leakage_threshold=args.semantic_threshold, reworded_copy_threshold=args.reworded_threshold)
    started = time.perf_counter()
    # Planting follows the default near-copy threshold, whatever the gates are run with.
    candidates, eval_texts, labels, plants, flips, origin = build(Path(args.data), args.rows, args.seed, args.eval_rows,
                                                                  args.real_rows, gates.GateConfig.near_duplicate_threshold)
    build_seconds = time.perf_counter() - started
    contract = ClassificationContract(labels={label: label for label in labels})
    phases: dict[str, dict] = {}
    n = len(candidates)

    started = time.perf_counter()
    pii.scrub("warm up the engines")
    pii_engine_seconds = time.perf_counter() - started
    candidates, pii_rows = timed(phases, "pii_scrub", n, lambda: pii.scrub_rows(candidates))

    embedder = Embedder()
    started = time.perf_counter()
    model = embedder.load()
    model_load_seconds = time.perf_counter() - started
    both = timed(phases, "encode", n + len(eval_texts), lambda: embedder.encode([r["text"] for r in candidates] + eval_texts, model=model))
    embeddings, eval_embeddings = both[:n], both[n:]

    count_tokens = None
    if args.count_tokens:
        from factory.integrations.resources import BaseModel
        from factory.integrations.storage import FactoryStorage

        cache = str(Path(args.cache).resolve())
        count_tokens = BaseModel(storage=FactoryStorage(cache_root=cache), spec=args.base_model).token_counter()
    accepted, rejected = timed(phases, "gates", n, lambda: gates.apply_gates(
        candidates, contract, eval_texts, SYSTEM_PROMPT, config, embeddings, eval_embeddings, count_tokens=count_tokens))

    position = {row["id"]: i for i, row in enumerate(candidates)}
    suspects = timed(phases, "mislabels", len(accepted), lambda: likely_mislabels(
        embeddings[[position[row["id"]] for row in accepted]], [row["target"] for row in accepted], args.seed))
    flagged = {accepted[s.index]["id"]: s.suggested for s in suspects}

    scored = score(candidates, eval_texts, plants, flips, origin, accepted, rejected, flagged, embeddings, eval_embeddings, config)
    seconds = {name: p["seconds"] for name, p in phases.items()}
    all_gates = seconds["gates"] + seconds["mislabels"]
    ratios = {"gates_vs_encoding": round(all_gates / seconds["encode"], 3),
              "gates_with_pii_vs_encoding": round((all_gates + seconds["pii_scrub"]) / seconds["encode"], 3),
              "gates_vs_encoding_with_model_load": round(all_gates / (seconds["encode"] + model_load_seconds), 3),
              "apply_gates_vs_encoding": round(seconds["gates"] / seconds["encode"], 3),
              "mislabels_vs_encoding": round(seconds["mislabels"] / seconds["encode"], 3)}
    payload = {
        "rows": n, "seed": args.seed, "eval_rows": len(eval_texts), "data": str(args.data),
        "real_rows": sum(o == "banking77_train" for o in origin.values()),
        "synthetic_rows": sum(o == "synthetic" for o in origin.values()),
        "planted_rows": len(plants), "planted_asked": plant_counts(args.rows), "label_flips": len(flips),
        "gate_config": dataclasses.asdict(config), "system_prompt": SYSTEM_PROMPT,
        "count_tokens": args.base_model if args.count_tokens else None, "embedder": embedder.model,
        "build_seconds": round(build_seconds, 2), "pii_engine_seconds": round(pii_engine_seconds, 2),
        "model_load_seconds": round(model_load_seconds, 2), "phases": phases, "ratios": ratios,
        "targets": {"ratio": TARGET_RATIO, "growth": TARGET_GROWTH, "recall": TARGET_RECALL},
        "meets": {"ratio": ratios["gates_vs_encoding"] <= TARGET_RATIO,
                  "ratio_with_pii": ratios["gates_with_pii_vs_encoding"] <= TARGET_RATIO,
                  "recall": {kind: m["recall"] >= TARGET_RECALL for kind, m in scored["planted"].items()},
                  "recall_reachable": {kind: m["recall_reachable"] is not None and m["recall_reachable"] >= TARGET_RECALL
                                       for kind, m in scored["planted"].items()}},
        "accepted": len(accepted), "rejected_by_gate": dict(Counter(r["gate"] for r in rejected)),
        "pii_rows": len(pii_rows), **scored,
    }
    out_dir = Path(args.out) if args.out else None
    smaller = (out_dir or Path(__file__).resolve().parent / "results") / f"gates_scale_{n // 10}.json"
    if args.name is None and smaller.exists():
        before = json.loads(smaller.read_text())
        growth = {name: round(p["seconds"] / before["phases"][name]["seconds"], 2) for name, p in phases.items()}
        growth["all_gates"] = round(all_gates / (before["phases"]["gates"]["seconds"] + before["phases"]["mislabels"]["seconds"]), 2)
        payload["growth"] = {"from_rows": before["rows"], "from_commit": before["commit"], "seconds_ratio": growth}
        payload["meets"]["growth"] = growth["all_gates"] <= TARGET_GROWTH
    write_result(args.name or f"gates_scale_{n}", payload, out_dir)
    print(table(payload))
    return payload


if __name__ == "__main__":
    main()
