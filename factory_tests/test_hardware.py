import os
import subprocess
import sys

import pytest


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2, reason="needs a machine with 2 cores")
def test_threads_are_sized_by_the_cores_the_process_may_use_not_by_the_machine():
    pinned = ("import os; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]}); "
              "from factory.lib.hardware import usable_cores; print(usable_cores(), os.cpu_count())")
    used, machine = map(int, subprocess.run([sys.executable, "-c", pinned], capture_output=True, text=True,
                                            check=True).stdout.split())
    assert used == 1 and machine >= 2
