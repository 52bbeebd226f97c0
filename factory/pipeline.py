"""Materialise every stage of one dataset version: what the CLI, the benchmarks and the end-to-end test run."""
from __future__ import annotations

import dagster as dg

from factory.definitions import defs
from factory.defs.partitions import dataset_versions

# What `factory eval` re-runs on an existing version: the baselines and the report with its release gates.
EVALUATION = ("baseline_report", "eval_report")


def materialize_version(key: str, instance: dg.DagsterInstance, resources: dict | None = None,
                        run_config: dict | None = None, raise_on_error: bool = True,
                        assets: tuple[str, ...] | None = None) -> dg.ExecuteInProcessResult:
    """Every asset and check (or only `assets` and their checks) for partition `key`; resources default to the
    deployment's bindings."""
    loaded = defs()
    selection = [dg.AssetKey(name) for name in assets] if assets else None
    if resources is None:
        return loaded.resolve_job_def("factory_pipeline").execute_in_process(
            partition_key=key, instance=instance, run_config=run_config or {}, raise_on_error=raise_on_error,
            asset_selection=selection)
    # The version's graph only: the traffic assets are partitioned by task, not by version.
    version_assets = [a for a in loaded.assets if a.partitions_def == dataset_versions]
    return dg.materialize([*version_assets, *loaded.asset_checks], partition_key=key, instance=instance,
                          selection=selection, resources=resources, run_config=run_config or {},
                          raise_on_error=raise_on_error)


def failed_checks(result: dg.ExecuteInProcessResult) -> list[str]:
    """Names of the checks that failed in a run, with what they reported."""
    return [f"{c.asset_key.to_user_string()}:{c.check_name}" for c in result.get_asset_check_evaluations() if not c.passed]


def recipe_config(recipe: str) -> dict:
    """Run config choosing the training recipe."""
    return {"ops": {"training_recipe": {"config": {"recipe": recipe}}}}
