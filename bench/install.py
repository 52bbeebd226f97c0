"""Question 3: what installing costs on a fresh machine: the Makefile's install into a new venv with an empty pip cache.

    python3 bench/install.py

Asks make for the install commands (`make -n`), so the Makefile stays the one place that says how to
install, then runs them one by one, timing each, with a virtual environment and a pip cache of its own
that start empty (as on a fresh machine: every wheel fetched, llama.cpp compiled). Runs with the
system Python: it measures the install, so it needs none.
"""
from __future__ import annotations

import argparse
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def install_commands(repo: Path, venv: Path, dagster_home: Path) -> list[str]:
    """The recipe lines `make install` would run for a venv that does not exist yet."""
    # Clean of an outer make's settings (under `make test` they would add "Entering directory" lines and flags).
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    dry = subprocess.run(["make", "--no-print-directory", "-n", "install", f"VENV={venv}", f"DAGSTER_HOME={dagster_home}"],
                         cwd=repo, env=env, capture_output=True, text=True, check=True)
    return [line for line in dry.stdout.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def step_name(command: str) -> str:
    words = shlex.split(command)
    if "install" in words:  # the packages a pip line installs, without its flags
        packages = [w for w in words[words.index("install") + 1:] if not w.startswith("-") and "/" not in w]
        return "pip install " + " ".join(packages)
    return "python -m venv" if "venv" in words else " ".join([w for w in words if "/" not in w][:2])


def directory_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 2**20


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=str(ROOT), help="checkout whose Makefile to install from")
    parser.add_argument("--name", default="install")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="factory-install-") as scratch:
        venv, cache = Path(scratch) / "venv", Path(scratch) / "pip-cache"
        env = {**os.environ, "PIP_CACHE_DIR": str(cache)}
        steps = []
        started = time.perf_counter()
        repo = Path(args.repo).resolve()
        for command in install_commands(repo, venv, Path(scratch) / "dagster"):
            step_started = time.perf_counter()
            subprocess.run(command, shell=True, executable="/bin/bash", cwd=repo, env=env, check=True,
                           stdout=subprocess.DEVNULL)
            seconds = time.perf_counter() - step_started
            steps.append({"step": step_name(command), "seconds": round(seconds, 1)})
            print(f"{seconds:7.1f}s  {steps[-1]['step']}", flush=True)
        total = time.perf_counter() - started
        payload = {"total_seconds": round(total, 1), "steps": steps, "venv_mib": round(directory_mib(venv)),
                   "pip_cache_mib": round(directory_mib(cache)),  # downloads plus the wheels pip built
                   # ru_maxrss of children: the largest single process (the llama.cpp compile or pip), in KiB on Linux.
                   "peak_child_rss_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)}
    print(f"total {total:.0f}s")
    write_result(args.name, payload, args.out)
    return payload


if __name__ == "__main__":
    main()
