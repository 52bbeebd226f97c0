"""Dataset versions are Dagster partitions keyed `<task>.v<n>`."""
from __future__ import annotations

import re

from factory.lib.errors import DataError

_KEY = re.compile(r"^(?P<task>[a-z0-9][a-z0-9_\-]*)\.v(?P<n>[1-9][0-9]*)$")


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
    numbers = [n for t, n in (parse_version_key(k) for k in existing if _KEY.match(k)) if t == task]
    return version_key(task, max(numbers, default=0) + 1)
