"""The served model's request log: one JSON line per request or feedback, appended crash-safely, rotated by day and size.

Rotation never renames: the writer starts a new file (`requests-<UTC day>-<seq>.jsonl`) when the day changes or the
current one is full, so a reader's cursor (file name -> byte offset of the next unread line) stays valid across a
rotation, and a line is never in two files. Each line goes to the kernel in one `write` on an O_APPEND descriptor
under a lock shared by every process serving the task, so concurrent writers cannot interleave; a reader only takes
lines that end in a newline, so a line being written is taken on the next read, whole.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock

LOG_NAME = re.compile(r"^requests-(\d{8})-(\d{4})\.jsonl$")


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class RequestLog:
    """Appends records under `directory`; safe to share between threads and between processes."""

    def __init__(self, directory: str | Path, max_bytes: int = 64 * 2**20, fsync: bool = False,
                 clock: Callable[[], dt.datetime] = utc_now):
        self.directory, self.max_bytes, self.fsync, self.clock = Path(directory), max_bytes, fsync, clock
        self.directory.mkdir(parents=True, exist_ok=True)
        self._thread_lock = threading.Lock()
        self._process_lock = FileLock(str(self.directory / ".append.lock"))

    def append(self, record: dict) -> Path:
        line = (json.dumps(record, ensure_ascii=False, sort_keys=True, default=str) + "\n").encode("utf-8")
        with self._thread_lock, self._process_lock:
            path = self._current_file(len(line))
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                # A writer killed mid-line leaves a fragment without a newline: close it off so it stays its own
                # (rejected) line instead of swallowing this one.
                size = os.fstat(fd).st_size
                if size and _last_byte(path, size) != b"\n":
                    line = b"\n" + line
                os.write(fd, line)
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
        return path

    def _current_file(self, incoming: int) -> Path:
        day = self.clock().strftime("%Y%m%d")
        today = sorted(p for p in self.directory.glob(f"requests-{day}-*.jsonl") if LOG_NAME.match(p.name))
        if not today:
            return self.directory / f"requests-{day}-0001.jsonl"
        last = today[-1]
        if last.stat().st_size + incoming > self.max_bytes:
            return self.directory / f"requests-{day}-{int(LOG_NAME.match(last.name)[2]) + 1:04d}.jsonl"
        return last


def _last_byte(path: Path, size: int) -> bytes:
    with path.open("rb") as handle:
        handle.seek(size - 1)
        return handle.read(1)


@dataclass
class NewLines:
    """What a read found past the cursor: complete lines by file, the byte ranges they came from, and the next cursor."""

    records: list[dict] = field(default_factory=list)
    malformed: list[tuple[str, int]] = field(default_factory=list)  # (file, byte offset) of lines that are not JSON
    ranges: dict[str, list[int]] = field(default_factory=dict)  # file -> [start, end) byte offsets
    cursor: dict[str, int] = field(default_factory=dict)


def log_files(directory: str | Path) -> list[Path]:
    directory = Path(directory)
    return sorted(p for p in directory.glob("requests-*.jsonl") if LOG_NAME.match(p.name)) if directory.is_dir() else []


def pending_ranges(directory: str | Path, cursor: dict[str, int]) -> tuple[dict[str, list[int]], dict[str, int]]:
    """Byte ranges of the complete lines written since `cursor`, and the cursor after them (files that are gone drop out)."""
    ranges, after = {}, {}
    for path in log_files(directory):
        start, size = cursor.get(path.name, 0), path.stat().st_size
        end = start
        if size > start:
            with path.open("rb") as handle:
                handle.seek(start)
                end = start + handle.read(size - start).rfind(b"\n") + 1
        if end > start:
            ranges[path.name] = [start, end]
        after[path.name] = end
    return ranges, after


def read_ranges(directory: str | Path, ranges: dict[str, list[int]]) -> NewLines:
    """The records in the given byte ranges, in file order; lines that are not JSON objects are listed, not raised."""
    found = NewLines(ranges=ranges)
    for name in sorted(ranges):
        start, end = ranges[name]
        with (Path(directory) / name).open("rb") as handle:
            handle.seek(start)
            chunk = handle.read(end - start)
        offset = start
        for raw in chunk.split(b"\n")[:-1]:
            try:
                record = json.loads(raw)
                if not isinstance(record, dict):
                    raise ValueError
                found.records.append(record)
            except ValueError:
                found.malformed.append((name, offset))
            offset += len(raw) + 1
        found.cursor[name] = end
    return found
