"""A task: `data/tasks/<name>/task.yaml` plus its committed seeds and eval sets."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from factory.lib.contracts import Contract, ContractError, build_contract
from factory.lib.errors import DataError
from factory.lib.prompts import chat_messages

EVAL_SETS = ("dev", "test", "golden", "adversarial")


class ContractSpec(BaseModel):
    type: Literal["classification", "extraction"]
    labels: dict[str, str] | None = Field(None, description="classification: label -> one-line description")
    answers: dict[str, str] | None = Field(None, description="classification: label -> the words the model answers with "
                                                             "instead of the label (a verbalizer); default the label itself")
    json_schema: dict | None = Field(None, description="extraction: JSON Schema of the output object")

    @model_validator(mode="after")
    def _matches_type(self) -> ContractSpec:
        if self.type == "classification" and not self.labels:
            raise ValueError("a classification contract needs 'labels' (label: one-line description)")
        if self.type == "extraction" and not self.json_schema:
            raise ValueError("an extraction contract needs 'json_schema'")
        return self


class ReleaseGates(BaseModel):
    min_test_macro_f1: float = Field(0.0, description="the exported model's test macro-F1 must reach this")
    max_invalid_rate: float = Field(1.0, description="share of answers outside the contract, at most")
    golden_min_accuracy: float = Field(0.0, description="accuracy on the locked golden set, at least")


class TaskFiles(BaseModel):
    seeds: str = "seeds.jsonl"
    dev: str = "eval/dev.jsonl"
    test: str = "eval/test.jsonl"
    golden: str = "eval/golden.jsonl"
    adversarial: str = "eval/adversarial.jsonl"


class TaskSpec(BaseModel):
    name: str
    description: str = ""
    contract: ContractSpec
    system_prompt: str = Field(description="the one prompt used at training, evaluation and in the GGUF")
    max_input_chars: int = Field(2000, description="inputs are cut to this many characters everywhere, so prompts fit")
    metrics: list[str] = ["accuracy", "macro_f1"]
    release_gates: ReleaseGates = ReleaseGates()
    golden_sha256: str | None = Field(None, description="content hash locking the golden set")
    files: TaskFiles = TaskFiles()
    folder: Path = Field(Path("."), exclude=True)

    def build_contract(self) -> Contract:
        return build_contract(self.contract.model_dump(exclude_none=True))

    def messages(self, text: str) -> list[dict[str, str]]:
        return chat_messages(self.system_prompt, text, self.max_input_chars)

    def path(self, name: str) -> Path:
        return self.folder / getattr(self.files, name)


def load_task(folder: str | Path) -> TaskSpec:
    folder = Path(folder)
    path = folder / "task.yaml"
    if not path.exists():
        raise DataError(path, "task.yaml not found; create the task with `factory task import` or copy an example")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        raise DataError(path, f"malformed YAML: {exc}", line=None if line is None else line + 1) from None
    try:
        spec = TaskSpec.model_validate({**raw, "folder": folder})
        spec.build_contract()
    except ValidationError as exc:
        first = exc.errors()[0]
        raise DataError(path, first["msg"], field=".".join(str(p) for p in first["loc"])) from None
    except ContractError as exc:
        raise DataError(path, str(exc), field="contract") from None
    return spec
