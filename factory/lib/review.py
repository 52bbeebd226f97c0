"""From served traffic back to data: which requests a person should look at, what they decided, and where each
reviewed row goes (the production eval set first, training seeds only beyond it)."""
from __future__ import annotations

import csv
import io
import os
import uuid
from pathlib import Path

from factory.lib.errors import DataError

# The review file a person edits: fill `correct_label` (prefilled from feedback) and set `reviewed` to yes, or to
# skip for a request that should not become data. The other columns are context.
REVIEW_COLUMNS = ("request_id", "time", "model_version", "text", "model_label", "confidence", "reasons",
                  "feedback_label", "near_duplicate_of", "correct_label", "reviewed")
REVIEWED_VALUES = ("", "yes", "skip")


def latest_feedback(records: list[dict]) -> dict[str, str]:
    """request id -> the label the last feedback for it gave."""
    return {r["request_id"]: r["label"] for r in records if r.get("type") == "feedback"}


def unjudged_records(records: list[dict], judged: int) -> list[dict]:
    """What a review pass has not looked at yet: the log table's rows past the first `judged` (the table only grows),
    and the earlier requests that new feedback refers to, so a late correction still reaches the review file."""
    if judged > len(records):  # the table was rebuilt: judge it all again (merging into the review file is idempotent)
        judged = 0
    new = records[judged:]
    corrected = {r.get("request_id") for r in new if r.get("type") == "feedback"}
    return [r for r in records[:judged] if r.get("type") == "request" and r.get("id") in corrected] + new


def second_opinion(report: dict) -> str:
    """The classical baseline whose disagreement with the champion flags a request: the champion run's best one, or
    TF-IDF + LR when the champion is MiniLM + LR itself (released as the encoder candidate), which never disagrees."""
    if (report.get("release") or {}).get("kind") == "encoder":
        return "tfidf_logreg"
    best = report.get("best_baseline")
    return best if best in ("tfidf_logreg", "minilm_logreg") else "minilm_logreg"


def review_candidates(records: list[dict], review_below: float, baseline: dict[str, str] | None = None) -> list[dict]:
    """Requests worth a human look, each with why: corrected through feedback, abstained, low confidence, or answered
    differently by the best baseline (`baseline`: request id -> its label)."""
    feedback, rows = latest_feedback(records), []
    for record in records:
        if record.get("type") != "request":
            continue
        rid, output = record["id"], record.get("output")
        reasons = []
        if rid in feedback and feedback[rid] != output:
            reasons.append("corrected")
        if record.get("abstained"):
            reasons.append("abstained")
        if float(record.get("confidence", 0.0)) < review_below:
            reasons.append("low_confidence")
        if baseline is not None and rid in baseline and baseline[rid] != output:
            reasons.append("baseline_disagrees")
        if reasons:
            rows.append({"request_id": rid, "time": record.get("time", ""), "model_version": record.get("model_version", ""),
                         "text": record.get("input", ""), "model_label": output or "",
                         "confidence": f"{float(record.get('confidence', 0.0)):.4f}", "reasons": " ".join(reasons),
                         "feedback_label": feedback.get(rid, ""), "near_duplicate_of": "",
                         "correct_label": feedback.get(rid, ""), "reviewed": ""})
    return rows


def merge_review(existing: list[dict], candidates: list[dict]) -> list[dict]:
    """The review file after new traffic: every row a person touched stays as they left it; feedback that arrived since
    fills `feedback_label` (and `correct_label` while the row is unreviewed); new candidates are appended."""
    fresh = {row["request_id"]: row for row in candidates}
    merged, seen = [], set()
    for row in existing:
        row = dict(row)
        update = fresh.get(row["request_id"])
        if update and update["feedback_label"] and not row.get("reviewed"):
            row["feedback_label"] = update["feedback_label"]
            row["correct_label"] = row.get("correct_label") or update["feedback_label"]
            row["reasons"] = update["reasons"]
        merged.append(row)
        seen.add(row["request_id"])
    return merged + [row for row in candidates if row["request_id"] not in seen]


def read_review(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REVIEW_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(path, f"the review file lost its columns {missing}; keep the header as written", line=1)
        return [{**{c: (row.get(c) or "").strip() for c in REVIEW_COLUMNS}, "_line": n} for n, row in enumerate(reader, 2)]


def write_review(path: Path, rows: list[dict]) -> Path:
    """All rows or nothing, so a person's file is never left half-written."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=REVIEW_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(buffer.getvalue(), encoding="utf-8")
    os.replace(tmp, path)
    return path


def reviewed_rows(rows: list[dict], labels: set[str], path: Path) -> list[dict]:
    """The rows a person marked `reviewed: yes`, checked: every problem in the file is reported at once, by line."""
    problems, accepted = [], []
    for row in rows:
        line, decision = row["_line"], row["reviewed"].lower()
        if decision not in REVIEWED_VALUES:
            problems.append(DataError(path, f"reviewed must be one of yes, skip or empty, got {row['reviewed']!r}",
                                      line=line, field="reviewed"))
        elif decision == "yes" and row["correct_label"] not in labels:
            problems.append(DataError(path, f"correct_label {row['correct_label']!r} is not one of the task's labels",
                                      line=line, field="correct_label"))
        elif decision == "yes" and not row["text"]:
            problems.append(DataError(path, "text is empty", line=line, field="text"))
        elif decision == "yes":
            accepted.append(row)
    if problems:
        raise DataError(path, "the review file has problems:\n" + "\n".join(str(p) for p in problems))
    return accepted


def assign_splits(reviewed: list[dict], previous: dict[str, str], eval_size: int) -> list[dict]:
    """Each reviewed row as an example with its split: rows keep the split they were first given; a new row fills the
    production eval set up to `eval_size` first and becomes a training seed only beyond it. A near-duplicate of a
    training row, or a text already in a split, goes where that copy is, so no text is in both."""
    splits = dict(previous)
    by_text = {}
    for row in reviewed:
        if row["request_id"] in splits:
            by_text.setdefault(row["text"].strip().lower(), splits[row["request_id"]])
    in_eval = sum(1 for row in reviewed if splits.get(row["request_id"]) == "eval")
    out = []
    for row in sorted(reviewed, key=lambda r: (r["time"], r["request_id"])):
        rid, key = row["request_id"], row["text"].strip().lower()
        if rid not in splits:
            if key in by_text:
                splits[rid] = by_text[key]
            elif row["near_duplicate_of"]:
                splits[rid] = "train"
            elif in_eval < eval_size:
                splits[rid], in_eval = "eval", in_eval + 1
            else:
                splits[rid] = "train"
            by_text.setdefault(key, splits[rid])
        out.append({"id": f"prod-{rid}", "text": row["text"], "label": row["correct_label"], "request_id": rid,
                    "split": splits[rid], "model_label": row["model_label"], "model_version": row["model_version"]})
    return out
