"""The thin CLI every training script shares: a JSON config file in, a JSON summary out."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dagster_pipes import PipesEnvVarParamsLoader, open_dagster_pipes


def load_config(config_cls: type, path: str | Path) -> Any:
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    names = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise SystemExit(f"{path}: unknown config fields {unknown}; known: {sorted(names)}")
    return config_cls(**raw)


def error_path(config_path: str | Path) -> Path:
    return Path(config_path).with_suffix(".error.txt")


def run(main: Callable[..., dict], config_cls: type, argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=(main.__doc__ or "").strip().partition("\n")[0])
    parser.add_argument("--config", required=True, action="append",
                        help="JSON file with the fields of " + config_cls.__name__ + "; repeat it to run several in turn")
    args = parser.parse_args(argv)
    configs = [(path, load_config(config_cls, path)) for path in args.config]
    for path, _ in configs:
        error_path(path).unlink(missing_ok=True)
    with contextlib.ExitStack() as stack:
        if PipesEnvVarParamsLoader().is_dagster_pipes_process():
            log = stack.enter_context(open_dagster_pipes()).log.info
        else:
            def log(msg):
                print(msg, file=sys.stderr, flush=True)
        summaries = []
        for path, config in configs:
            try:
                summaries.append(main(config, log=log))
            except Exception:
                # Beside the config, so the launching asset can fail with the script's own words, not only an exit code.
                error_path(path).write_text(traceback.format_exc(), encoding="utf-8")
                raise
            print(json.dumps(summaries[-1], default=str), flush=True)
    return summaries
