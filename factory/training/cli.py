"""The thin CLI every training script shares: a JSON config file in, a JSON summary out."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
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


def run(main: Callable[..., dict], config_cls: type, argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=(main.__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--config", required=True, help="JSON file with the fields of " + config_cls.__name__)
    args = parser.parse_args(argv)
    config = load_config(config_cls, args.config)
    if PipesEnvVarParamsLoader().is_dagster_pipes_process():
        with open_dagster_pipes() as pipes:
            summary = main(config, log=pipes.log.info)
    else:
        summary = main(config, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(json.dumps(summary, default=str))
    return summary
