"""Output contracts: what a valid answer is, how it is written, parsed and scored.

Everything downstream sees a row's target as one canonical string, so the stages
work unchanged for classification (a label) and extraction (a JSON object).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import jsonschema
from sklearn.metrics import accuracy_score, f1_score


class ContractError(ValueError):
    """A target that breaks the contract; the message says which value and why."""


class Contract(Protocol):
    kind: str
    target_field: str  # the column that holds the answer in the task's data files

    def canonical(self, value: Any) -> str: ...
    def render(self, target: str) -> str: ...
    def parse_answer(self, text: str) -> str | None: ...
    def stratum(self, target: str) -> str: ...
    def metrics(self, targets: list[str], predictions: list[str | None]) -> dict[str, float]: ...


def _invalid_rate(predictions: list[str | None]) -> float:
    return sum(p is None for p in predictions) / len(predictions) if predictions else 0.0


@dataclass(frozen=True)
class ClassificationContract:
    """Exactly one label from a fixed set. The model may answer with other words for a label (`answers`, a
    verbalizer: `card arrival` for `card_arrival`); the target everywhere else stays the label."""

    labels: dict[str, str]  # label -> one-line description
    answers: dict[str, str] = field(default_factory=dict)  # label -> the words the model answers with; default the label
    kind: str = "classification"
    target_field: str = "label"

    def __post_init__(self) -> None:
        unknown = sorted(set(self.answers) - set(self.labels))
        if unknown:
            raise ContractError(f"answers given for unknown labels {unknown}")
        self._label_of  # noqa: B018 - builds and checks the answer -> label map now, not at the first answer

    @cached_property
    def _label_of(self) -> dict[str, str]:
        label_of: dict[str, str] = {}
        for label in sorted(self.labels):
            answer = self.render(label)
            if not answer.strip() or answer != answer.strip():
                raise ContractError(f"the answer for label {label!r} must be non-empty without outer spaces, got {answer!r}")
            if answer in label_of:
                raise ContractError(f"labels {label_of[answer]!r} and {label!r} have the same answer {answer!r}")
            label_of[answer] = label
        return label_of

    def canonical(self, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ContractError(f"label must be a non-empty string, got {value!r}")
        label = value.strip()
        if label not in self.labels:
            raise ContractError(f"unknown label {label!r}; expected one of: {', '.join(sorted(self.labels))}")
        return label

    def render(self, target: str) -> str:
        return self.answers.get(target, target)

    def parse_answer(self, text: str) -> str | None:
        return self._label_of.get(text.strip().strip("`'\".").strip())

    def stratum(self, target: str) -> str:
        return target

    def metrics(self, targets: list[str], predictions: list[str | None]) -> dict[str, float]:
        scored = [p if p is not None else "<invalid>" for p in predictions]
        return {
            "accuracy": float(accuracy_score(targets, scored)),
            # Over the labels the eval rows contain: a sample without a label must not score it as 0.
            "macro_f1": float(f1_score(targets, scored, labels=sorted(set(targets)), average="macro", zero_division=0)),
            "invalid_rate": _invalid_rate(predictions),
        }


@dataclass(frozen=True)
class ExtractionContract:
    """A JSON object valid against a JSON Schema; scored by exact match and per field."""

    json_schema: dict = field(default_factory=dict)
    kind: str = "extraction"
    target_field: str = "output"

    def canonical(self, value: Any) -> str:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ContractError(f"output is not valid JSON: {exc.msg}") from None
        try:
            jsonschema.validate(value, self.json_schema)
        except jsonschema.ValidationError as exc:
            path = "/".join(str(p) for p in exc.absolute_path) or "<root>"
            raise ContractError(f"output breaks the schema at {path}: {exc.message}") from None
        return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))

    def render(self, target: str) -> str:
        return target

    def parse_answer(self, text: str) -> str | None:
        try:
            return self.canonical(text.strip())
        except ContractError:
            return None

    def stratum(self, target: str) -> str:
        return "all"

    def metrics(self, targets: list[str], predictions: list[str | None]) -> dict[str, float]:
        fields = sorted(self.json_schema.get("properties", {}))
        gold = [json.loads(t) for t in targets]
        pred = [json.loads(p) if p is not None else {} for p in predictions]
        result = {
            "exact_match": sum(g == p for g, p in zip(gold, pred)) / len(gold) if gold else 0.0,
            "invalid_rate": _invalid_rate(predictions),
        }
        if fields and gold:
            hits = sum(g.get(f) == p.get(f) for g, p in zip(gold, pred) for f in fields)
            result["field_accuracy"] = hits / (len(gold) * len(fields))
        return result


def build_contract(spec: dict) -> Contract:
    kind = spec.get("type")
    if kind == "classification":
        return ClassificationContract(labels=dict(spec["labels"]), answers=dict(spec.get("answers") or {}))
    if kind == "extraction":
        return ExtractionContract(json_schema=dict(spec["json_schema"]))
    raise ContractError(f"contract.type must be 'classification' or 'extraction', got {kind!r}")
