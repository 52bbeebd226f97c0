"""The dataset card written beside a version's splits: what a person needs before training on it."""
from __future__ import annotations

from collections import Counter

# Columns every split row has as plain strings: what the Hugging Face dataset keeps (nested provenance stays in JSONL).
HF_COLUMNS = ("id", "text", "target", "source", "cluster")


def hf_rows(rows: list[dict]) -> dict[str, list[str]]:
    return {column: [str(row.get(column) or "") for row in rows] for column in HF_COLUMNS}


def card_markdown(version: str, task_description: str, rows: list[dict], gate_summary: dict) -> str:
    """Counts per label and split, the gates' verdicts, and where the rows came from (source and teacher)."""
    splits = sorted({row["split"] for row in rows})
    labels = sorted({row["target"] for row in rows})
    counts = Counter((row["target"], row["split"]) for row in rows)
    lines = [f"# {version}", "", task_description, "",
             "## Rows per label and split", "", "| label | " + " | ".join(splits) + " |",
             "|---|" + "---:|" * len(splits)]
    lines += [f"| {label} | " + " | ".join(str(counts[(label, s)]) for s in splits) + " |" for label in labels]
    lines += ["| **all** | " + " | ".join(str(sum(r["split"] == s for r in rows)) for s in splits) + " |", "",
              "## Gates", "", f"{gate_summary.get('input', '?')} candidate rows, {gate_summary.get('accepted', '?')} "
              "accepted. Rejected by gate:", ""]
    lines += [f"- {gate}: {n}" for gate, n in sorted(gate_summary.get("rejected_by_gate", {}).items())] or ["- none"]
    provenance = Counter((row.get("source", "?"), row.get("teacher_model", "")) for row in rows)
    lines += ["", "## Provenance", "", "| source | teacher | rows |", "|---|---|---:|"]
    lines += [f"| {source} | {teacher or '-'} | {n} |" for (source, teacher), n in sorted(provenance.items())]
    lines += ["", "Rows linked by near copies or parentage share a `cluster` and one split. Full provenance per row "
                  "(teacher, template and hash, sampling, judge verdict, PII kinds) is in the JSONL files beside this card.",
              ""]
    return "\n".join(lines)
