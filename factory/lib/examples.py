"""Loading task data files into canonical example rows: id, text, target, source."""
from __future__ import annotations

from pathlib import Path

from factory.lib.contracts import Contract, ContractError
from factory.lib.errors import DataError
from factory.lib.files import read_jsonl


def load_examples(path: str | Path, contract: Contract, source: str) -> list[dict]:
    """Validate every row of a task file; the first bad one raises DataError with file, line and field."""
    rows, seen = [], {}
    for raw in read_jsonl(path):
        line = raw["_line"]
        for field in ("id", "text", contract.target_field):
            if field not in raw:
                raise DataError(path, "missing field", line=line, field=field)
        row_id, text = raw["id"], raw["text"]
        if not isinstance(row_id, str) or not row_id.strip():
            raise DataError(path, f"id must be a non-empty string, got {row_id!r}", line=line, field="id")
        if row_id in seen:
            raise DataError(path, f"duplicate id {row_id!r} (first on line {seen[row_id]})", line=line, field="id")
        if not isinstance(text, str) or not text.strip():
            raise DataError(path, "text is empty; every example needs an input", line=line, field="text")
        try:
            target = contract.canonical(raw[contract.target_field])
        except ContractError as exc:
            raise DataError(path, str(exc), line=line, field=contract.target_field) from None
        seen[row_id] = line
        row_source = raw.get("source", source)  # the importer marks historical labels "import": the mislabel gate checks them
        if not isinstance(row_source, str) or not row_source.strip():
            raise DataError(path, f"source must be a non-empty string, got {row_source!r}", line=line, field="source")
        row = {"id": row_id, "text": text, "target": target, "source": row_source}
        if "critical" in raw:  # golden rows a release must never get wrong
            if not isinstance(raw["critical"], bool):
                raise DataError(path, f"critical must be true or false, got {raw['critical']!r}", line=line, field="critical")
            row["critical"] = raw["critical"]
        rows.append(row)
    return rows


def load_texts(path: str | Path) -> list[dict]:
    """In-domain texts without labels ({"text"}, an optional "id"); the first bad row raises DataError with file, line
    and field."""
    rows, seen = [], {}
    for raw in read_jsonl(path):
        line = raw["_line"]
        text = raw.get("text")
        if not isinstance(text, str) or not text.strip():
            raise DataError(path, f"text must be a non-empty string, got {text!r}", line=line, field="text")
        row_id = raw.get("id", f"line-{line}")
        if not isinstance(row_id, str) or not row_id.strip():
            raise DataError(path, f"id must be a non-empty string, got {row_id!r}", line=line, field="id")
        if row_id in seen:
            raise DataError(path, f"duplicate id {row_id!r} (first on line {seen[row_id]})", line=line, field="id")
        seen[row_id] = line
        rows.append({"id": row_id, "text": text})
    return rows
