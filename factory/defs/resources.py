import os

import dagster as dg

from factory.integrations.llm_client import ChatEndpoint
from factory.integrations.resources import BaseModel, Embedder, TrainingScripts
from factory.integrations.storage import FactoryStorage
from factory.integrations.teacher import Teacher
from factory.integrations.tracking import MlflowTracker


def factory_resources(data_root: str, cache_root: str = "", base_model: str = "smollm2-135m", chat_template: str = "",
                      embedder: str = "all-MiniLM-L6-v2", mlflow_uri: str = "", reference_base_url: str = "",
                      reference_model: str = "", teacher: dict | None = None) -> dict:
    """The one place resources are bound; the CLI, tests and benchmarks call it with their own roots."""
    storage = FactoryStorage(data_root=data_root, cache_root=cache_root)
    return {
        "storage": storage,
        "tracker": MlflowTracker(storage=storage, tracking_uri=mlflow_uri),
        "base_model": BaseModel(storage=storage, spec=base_model, chat_template=chat_template),
        "embedder": Embedder(model=embedder),
        "scripts": TrainingScripts(),
        "reference_model": ChatEndpoint(base_url=reference_base_url, model=reference_model),
        "teacher": Teacher(storage=storage, **(teacher or {})),
    }


@dg.definitions
def resources() -> dg.Definitions:
    # Per-deployment values come from the environment (see .env.example); defaults run locally.
    return dg.Definitions(resources=factory_resources(
        data_root=os.environ.get("FACTORY_DATA_ROOT", "data"),
        cache_root=os.environ.get("FACTORY_CACHE_ROOT", ""),
        base_model=os.environ.get("FACTORY_BASE_MODEL", "smollm2-135m"),
        chat_template=os.environ.get("FACTORY_CHAT_TEMPLATE", ""),
        embedder=os.environ.get("FACTORY_EMBEDDER", "all-MiniLM-L6-v2"),
        mlflow_uri=os.environ.get("MLFLOW_TRACKING_URI", ""),
        reference_base_url=os.environ.get("FACTORY_REFERENCE_BASE_URL", ""),
        reference_model=os.environ.get("FACTORY_REFERENCE_MODEL", ""),
        teacher={"backend": os.environ.get("FACTORY_TEACHER_BACKEND", "none"),
                 "base_url": os.environ.get("FACTORY_TEACHER_BASE_URL", ""),
                 "model": os.environ.get("FACTORY_TEACHER_MODEL", ""),
                 "gguf": os.environ.get("FACTORY_TEACHER_GGUF", ""),
                 "structured_output": os.environ.get("FACTORY_TEACHER_STRUCTURED_OUTPUT", "llama_cpp"),
                 "max_concurrency": int(os.environ.get("FACTORY_TEACHER_MAX_CONCURRENCY", "4")),
                 "timeout_s": float(os.environ.get("FACTORY_TEACHER_TIMEOUT_S", "120"))},
    ))
