import os

import dagster as dg

from factory.integrations.resources import BaseModel, Embedder, TrainingScripts
from factory.integrations.storage import FactoryStorage
from factory.integrations.tracking import MlflowTracker


@dg.definitions
def resources() -> dg.Definitions:
    # Per-deployment values come from the environment (see .env.example); defaults run locally.
    storage = FactoryStorage(data_root=os.environ.get("FACTORY_DATA_ROOT", "data"),
                             cache_root=os.environ.get("FACTORY_CACHE_ROOT", ""))
    return dg.Definitions(
        resources={
            "storage": storage,
            "tracker": MlflowTracker(storage=storage, tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", "")),
            "base_model": BaseModel(storage=storage, spec=os.environ.get("FACTORY_BASE_MODEL", "smollm2-135m")),
            "embedder": Embedder(model=os.environ.get("FACTORY_EMBEDDER", "all-MiniLM-L6-v2")),
            "scripts": TrainingScripts(),
        }
    )
