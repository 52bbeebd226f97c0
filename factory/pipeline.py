"""Materialise every stage of one dataset version: what the CLI, the benchmarks and the end-to-end test run."""
from __future__ import annotations

import dagster as dg

from factory.definitions import defs


def materialize_version(key: str, instance: dg.DagsterInstance, resources: dict | None = None,
                        run_config: dict | None = None, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    """Every asset and check for partition `key`; resources default to the deployment's bindings."""
    loaded = defs()
    if resources is None:
        return loaded.resolve_job_def("factory_pipeline").execute_in_process(
            partition_key=key, instance=instance, run_config=run_config or {}, raise_on_error=raise_on_error)
    return dg.materialize([*loaded.assets, *loaded.asset_checks], partition_key=key, instance=instance,
                          resources=resources, run_config=run_config or {}, raise_on_error=raise_on_error)


def recipe_config(recipe: str, **ops: dict) -> dict:
    """Run config choosing the training recipe, plus any other per-asset config."""
    return {"ops": {"lora_adapter": {"config": {"recipe": recipe}}, **{op: {"config": c} for op, c in ops.items()}}}
