"""Where everything lives: one data root, then the task or the dataset version and the asset."""
from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field

from factory.lib.task import TaskSpec, load_task
from factory.lib.versions import check_task_name, parse_version_key


class FactoryStorage(dg.ConfigurableResource):
    """Paths under the data root. Tasks are committed; everything else under it is generated."""

    data_root: str = Field(default="data", description="root of tasks/, versions/, cache/ and mlflow/")
    cache_root: str = Field(default="", description="dequantized base models; empty: <data_root>/cache")

    @property
    def root(self) -> Path:
        return Path(self.data_root).resolve()

    def task_dir(self, task: str) -> Path:
        return self.root / "tasks" / check_task_name(task)

    def task_for(self, partition_key: str) -> TaskSpec:
        task, _ = parse_version_key(partition_key)
        return load_task(self.task_dir(task))

    def traffic_dir(self, task: str) -> Path:
        """A task's served traffic: request logs, the production log table, the review file."""
        return self.root / "traffic" / check_task_name(task)

    def asset_dir(self, partition_key: str, asset: str) -> Path:
        parse_version_key(partition_key)
        return self.root / "versions" / partition_key / asset

    def cache_dir(self) -> Path:
        return Path(self.cache_root).resolve() if self.cache_root else self.root / "cache"
