"""What this process may run on."""
from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process is allowed to run on (its affinity: `taskset`, `docker --cpuset-cpus`, a pinned test
    worker), not every core of the machine, which `os.cpu_count()` counts and threads would then fight over."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1
