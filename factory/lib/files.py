"""Reading and atomically writing the JSONL and directory artifacts every stage exchanges."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import resource
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from factory.lib.errors import DataError


def read_jsonl(path: str | Path) -> list[dict]:
    """Every line a JSON object; a bad line raises DataError naming the file and line."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(path, f"malformed JSON ({exc.msg} at column {exc.colno})", line=number) from None
            if not isinstance(row, dict):
                raise DataError(path, f"expected a JSON object, got {type(row).__name__}", line=number)
            row["_line"] = number
            rows.append(row)
    return rows


def strip_line_numbers(rows: Iterable[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "_line"} for row in rows]


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> Path:
    """Write all rows or nothing: a killed run never leaves a truncated file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for row in strip_line_numbers(rows):
            handle.write(_dumps(row) + "\n")
    os.replace(tmp, path)
    return path


def _dumps(value, indent: int | None = None) -> str:
    """Readable UTF-8 JSON; a lone surrogate (text decoded from bytes that were not UTF-8) is written escaped instead,
    so it reads back unchanged and the schema gate can reject it."""
    text = json.dumps(value, indent=indent, ensure_ascii=False, sort_keys=True)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return json.dumps(value, indent=indent, ensure_ascii=True, sort_keys=True)


def write_json(path: str | Path, payload: dict) -> Path:
    return write_text(path, _dumps(payload, indent=2) + "\n")


def write_text(path: str | Path, text: str) -> Path:
    """The whole text or the file as it was: written beside it, then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


@contextlib.contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a scratch folder that replaces `final` only if the block finishes.

    A folder that exists under its final name is therefore always complete; scratch
    folders left by a killed run carry a `.partial-` prefix and are never read.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    scratch = final.with_name(f".partial-{final.name}-{uuid.uuid4().hex[:8]}")
    scratch.mkdir()
    try:
        yield scratch
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    old = final.with_name(f".old-{final.name}-{uuid.uuid4().hex[:8]}")
    if final.exists():
        os.replace(final, old)
    os.replace(scratch, final)
    shutil.rmtree(old, ignore_errors=True)


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_rows(rows: Iterable[dict], fields: tuple[str, ...] = ("id", "text", "target")) -> str:
    """Content hash of rows independent of file formatting and row order."""
    lines = sorted(json.dumps([row.get(f) for f in fields], ensure_ascii=False) for row in rows)
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def peak_rss_mib() -> float:
    """Peak resident memory of the calling process, for the summaries scripts write.

    VmHWM restarts at exec; ru_maxrss would carry over the forking parent's peak on Linux.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def sample_rows(rows: list[dict], limit: int, seed: int = 0) -> list[dict]:
    """Up to `limit` rows drawn with a seed, in their original order (files are often sorted by label)."""
    if not limit or limit >= len(rows):
        return rows
    keep = set(random.Random(seed).sample(range(len(rows)), limit))
    return [row for i, row in enumerate(rows) if i in keep]
