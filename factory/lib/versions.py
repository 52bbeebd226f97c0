"""Dataset versions are Dagster partitions keyed `<task>.v<n>`."""
from __future__ import annotations

import re
from pathlib import Path

from factory.lib.errors import DataError

# A task name is a folder under tasks/ and the first part of a partition key: no separators, no dots, no '..'.
TASK_NAME_PATTERN = r"^[a-z0-9][a-z0-9_\-]{0,63}$"
_KEY = re.compile(r"^(?P<task>[a-z0-9][a-z0-9_\-]{0,63})\.v(?P<n>[1-9][0-9]*)$")


def check_task_name(name: str, where: str | Path = "<task name>") -> str:
    """The name itself, or DataError: it must be usable as a folder under tasks/ and inside a version key."""
    if not isinstance(name, str) or not re.match(TASK_NAME_PATTERN, name):
        raise DataError(where, f"bad task name {name!r}: use 1-64 lower-case letters, digits, '_' or '-', starting "
                               "with a letter or digit (no '/', '.', or spaces)")
    return name


def version_key(task: str, number: int) -> str:
    key = f"{task}.v{number}"
    parse_version_key(key)
    return key


def parse_version_key(key: str) -> tuple[str, int]:
    match = _KEY.match(key)
    if not match:
        raise DataError("<partition>", f"bad dataset version {key!r}; expected '<task>.v<n>' such as 'support_email.v1'")
    return match["task"], int(match["n"])


def next_version_key(existing: list[str], task: str) -> str:
    check_task_name(task)
    numbers = [n for t, n in (parse_version_key(k) for k in existing if _KEY.match(k)) if t == task]
    return version_key(task, max(numbers, default=0) + 1)
