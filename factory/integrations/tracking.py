"""MLflow: one run per (asset, partition) materialisation, tagged with the Dagster run."""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
from pydantic import Field

from factory.integrations.storage import FactoryStorage

CHAMPION = "champion"


class MlflowRun:
    def __init__(self, client, run_id: str, url: str):
        self.client, self.run_id, self.url = client, run_id, url

    def log_params(self, params: dict) -> None:
        for key, value in params.items():
            self.client.log_param(self.run_id, key, str(value)[:6000])

    def log_metrics(self, metrics: dict, prefix: str = "") -> None:
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                self.client.log_metric(self.run_id, prefix + key, float(value))

    def log_artifacts(self, path: Path, artifact_path: str | None = None) -> None:
        if Path(path).is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def register(self, model_name: str, model: Path, tags: dict[str, str], kind: str = "gguf") -> int:
        """Log the model (a GGUF file or an encoder folder) with this run under `kind`, add it as a new version of
        `model_name` and point the `champion` alias at it; earlier versions stay registered. MLflow's register_model
        needs an MLmodel file, so the version's source is the run's artifact folder."""
        from mlflow.exceptions import MlflowException

        self.log_artifacts(model, kind)
        try:
            self.client.create_registered_model(model_name, description="factory releases; the alias 'champion' is served")
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        source = f"{self.client.get_run(self.run_id).info.artifact_uri}/{kind}"
        version = self.client.create_model_version(model_name, source=source, run_id=self.run_id, tags=tags)
        self.client.set_registered_model_alias(model_name, CHAMPION, version.version)
        return int(version.version)

    def metadata(self) -> dict:
        return {"mlflow_run_id": self.run_id, "mlflow_run": dg.MetadataValue.url(self.url)}


class MlflowTracker(dg.ConfigurableResource):
    """A thin resource over MlflowClient; defaults to SQLite and files under the data root."""

    storage: FactoryStorage
    tracking_uri: str = Field(default="", description="MLflow backend; empty: sqlite under <data_root>/mlflow")
    experiment: str = Field(default="factory", description="MLflow experiment holding every run")
    ui_url: str = Field(default="http://127.0.0.1:5000", description="where the MLflow UI is served, for links")

    def uri(self) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        folder = self.storage.root / "mlflow"
        folder.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{folder / 'mlflow.db'}"

    def registered_name(self, task: str) -> str:
        return f"factory.{task}"

    def champion(self, task: str) -> dict | None:
        """The task's released model the `champion` alias points at: version, partition, model path; None before any."""
        from mlflow.exceptions import MlflowException

        client, _ = self._client_and_experiment()
        try:
            found = client.get_model_version_by_alias(self.registered_name(task), CHAMPION)
        except MlflowException:
            return None
        return {"version": int(found.version), "source": found.source, **found.tags}

    def _client_and_experiment(self):
        """Under a lock: steps running at once on a fresh data root would each migrate the new SQLite file (alembic
        fails in all but one) and each create the experiment."""
        from filelock import FileLock
        from mlflow.tracking import MlflowClient

        lock_dir = self.storage.root / "mlflow"
        lock_dir.mkdir(parents=True, exist_ok=True)
        with FileLock(lock_dir / ".init.lock"):
            client = MlflowClient(tracking_uri=self.uri())
            return client, self._experiment_id(client)

    def _experiment_id(self, client) -> str:
        found = client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        artifacts = (self.storage.root / "mlflow" / "artifacts").as_uri() if not self.tracking_uri else None
        return client.create_experiment(self.experiment, artifact_location=artifacts)

    @contextlib.contextmanager
    def run(self, context: dg.AssetExecutionContext, params: dict | None = None) -> Iterator[MlflowRun]:
        client, experiment_id = self._client_and_experiment()
        asset = context.asset_key.to_user_string()
        partition = context.partition_key if context.has_partition_key else "-"
        created = client.create_run(
            experiment_id,
            run_name=f"{asset}:{partition}",
            tags={"dagster.run_id": context.run.run_id, "dagster.asset_key": asset, "dagster.partition": partition},
        )
        run_id = created.info.run_id
        handle = MlflowRun(client, run_id, f"{self.ui_url}/#/experiments/{experiment_id}/runs/{run_id}")
        handle.log_params(params or {})
        try:
            yield handle
        except BaseException:
            client.set_terminated(run_id, status="FAILED")
            raise
        client.set_terminated(run_id, status="FINISHED")
