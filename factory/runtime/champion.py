"""Finding the model to answer with: a task's champion in the MLflow registry, or a named released version."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from factory.lib.errors import DataError
from factory.lib.files import read_jsonl
from factory.lib.task import load_task
from factory.lib.versions import check_task_name, parse_version_key


def champion_model_path(champion: dict) -> str:
    """The released file or folder a registered version points at (releases before encoders were tagged gguf_path)."""
    return champion.get("model_path") or champion.get("gguf_path", "")


def released_model_path(data_root: Path, task: str, version: str | None) -> tuple[Path, str]:
    """(model path: a GGUF file or an encoder folder, version key) of the champion, or of `version` when it was released."""
    from factory.integrations.storage import FactoryStorage
    from factory.integrations.tracking import MlflowTracker

    check_task_name(task, where="--task")
    if version is None:
        tracker = MlflowTracker(storage=FactoryStorage(data_root=str(data_root)),
                                tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", ""))
        champion = tracker.champion(task)
        if champion is None:
            raise DataError(data_root / "tasks" / task, "no released model yet: `factory run` a version whose release "
                                                        "gates pass, or name a version with --version")
        return Path(champion_model_path(champion)), champion["dagster.partition"]
    if parse_version_key(version)[0] != task:
        raise DataError("--version", f"{version!r} is not a version of task {task!r}")
    release = data_root / "versions" / version / "released_model" / "release.json"
    if not release.exists():
        raise DataError(release, f"{version} was not released (its release gates failed or it never ran)")
    record = json.loads(release.read_text())
    return release.parent / record.get("model", record.get("gguf", "")), version


def load_classifier(data_root: Path, task: str, version: str | None, threads: int = 0):
    """The released model (GGUF or encoder) behind one `classify`, and its version key."""
    from factory.runtime.encoder import released_classifier

    path, key = released_model_path(data_root, task, version)
    return released_classifier(path, load_task(data_root / "tasks" / task), threads), key


def read_inputs(source: str, text_field: str = "text") -> list[tuple[str, str]]:
    """(id, text) pairs from a .jsonl or .csv file, or the one text given."""
    path = Path(source)
    if path.suffix.lower() not in (".jsonl", ".csv") or not path.is_file():
        return [("text", source)]
    if path.suffix.lower() == ".jsonl":
        rows = [(str(r.get("id", r["_line"])), r.get(text_field), r["_line"]) for r in read_jsonl(path)]
    else:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            if text_field not in (reader.fieldnames or []):
                raise DataError(path, f"no column {text_field!r}; columns: {reader.fieldnames}", line=1, field=text_field)
            rows = [(r.get("id") or str(n), r[text_field], n) for n, r in enumerate(reader, start=2)]
    for _, text, line in rows:
        if not isinstance(text, str) or not text.strip():
            raise DataError(path, "missing or empty text", line=line, field=text_field)
    return [(row_id, text) for row_id, text, _ in rows]
