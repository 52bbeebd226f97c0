"""A task: `data/tasks/<name>/task.yaml` plus its committed seeds and eval sets."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from factory.lib.contracts import Contract, ContractError, build_contract
from factory.lib.errors import DataError
from factory.lib.prompts import chat_messages
from factory.lib.teacher import DEFAULT_DIFFICULTY, DIFFICULTIES, KINDS
from factory.lib.versions import TASK_NAME_PATTERN, check_task_name

EVAL_SETS = ("dev", "test", "golden", "adversarial")
PRODUCTION_SET = "production"  # reviewed production requests (the `reviewed_examples` asset writes it), scored like the others
REQUIRED_EVAL_SETS = ("dev", "test")  # dev chooses (quantization, checkpoints), test decides the release


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
    """What the served model must show before it becomes the champion; each one is checked on the served path."""

    min_test_macro_f1: float = Field(0.0, description="test macro-F1 (exact match for extraction), at least")
    max_invalid_rate: float = Field(1.0, description="share of answers outside the contract on any eval set, at most")
    golden_min_accuracy: float = Field(0.0, description="accuracy on the locked golden set, at least")
    beat_best_baseline: bool = Field(True, description="test macro-F1 at least the best baseline's in the same run")
    max_class_recall_drop: float = Field(0.10, description="per-label test recall may fall this much below the "
                                                           "previous release, at most")
    max_latency_p95_ms: float = Field(0.0, description="served-path p95 latency on test, at most (0: not gated)")
    max_golden_critical_failures: int = Field(0, description="golden rows marked `critical: true` answered wrong, at most")


class TaskFiles(BaseModel):
    seeds: str = "seeds.jsonl"
    dev: str = "eval/dev.jsonl"
    test: str = "eval/test.jsonl"
    golden: str = "eval/golden.jsonl"
    adversarial: str = "eval/adversarial.jsonl"
    # Reviewed production requests: an eval set first, training seeds only beyond it (see `ProductionSpec`).
    production: str = "production/eval.jsonl"
    production_seeds: str = "production/seeds.jsonl"
    # In-domain texts without labels: pseudo-labelled for training when `generated_examples` asks (never eval rows).
    unlabeled: str = "unlabeled.jsonl"


class ProductionSpec(BaseModel):
    """How served traffic flows back: what goes to review, how reviewed rows are split, when a new version starts."""

    review_below: float = Field(0.6, ge=0.0, le=1.0, description="requests answered with less confidence go to review")
    production_eval_size: int = Field(200, ge=0, description="reviewed rows the production eval set takes before any "
                                                             "reviewed row becomes a training seed")
    retrain_after: int = Field(50, ge=1, description="reviewed training seeds not yet in any version that start the "
                                                     "next dataset version")


class GenerationSpec(BaseModel):
    """What the teacher is asked for in each new version (used only when a teacher is configured)."""

    rows_per_label: int = Field(0, ge=0, description="teacher rows asked per label; 0: only labels the gates left "
                                                     "short and the last evaluation's failure clusters")
    mix: dict[str, float] = Field({"canonical": 0.4, "boundary": 0.2, "near_miss": 0.2, "production_like": 0.2},
                                  description=f"share of each kind of row: {', '.join(KINDS)} (negative: only with a "
                                              "fallback_label)")
    difficulty: dict[str, float] = Field(dict(DEFAULT_DIFFICULTY),
                                         description=f"share of requests at each difficulty: {', '.join(DIFFICULTIES)} "
                                                     "(repairs of failure clusters are always hard)")
    rows_per_request: int = Field(5, ge=1, le=50, description="rows asked for in one request")
    max_chars: int = Field(600, ge=20, description="longest text asked for (at most max_input_chars); the reply's "
                                                   "JSON Schema holds the teacher to it where the backend constrains")
    few_shot: int = Field(3, ge=0, description="seeds of the label shown in each request, chosen with the seed")
    temperature: float = Field(0.9, ge=0.0, le=2.0)
    max_tokens: int = Field(800, ge=16, description="per request")

    @model_validator(mode="after")
    def _known_kinds(self) -> GenerationSpec:
        unknown = sorted(set(self.mix) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown kinds {unknown} in generation.mix; known: {sorted(KINDS)}")
        unknown = sorted(set(self.difficulty) - set(DIFFICULTIES))
        if unknown:
            raise ValueError(f"unknown difficulties {unknown} in generation.difficulty; known: {list(DIFFICULTIES)}")
        if any(share < 0 for share in self.difficulty.values()) or not any(self.difficulty.values()):
            raise ValueError("generation.difficulty: shares must be >= 0 and at least one above 0")
        return self


class TaskSpec(BaseModel):
    name: str = Field(pattern=TASK_NAME_PATTERN, description="lower-case letters, digits, '_' and '-': a folder name")
    description: str = ""
    contract: ContractSpec
    system_prompt: str = Field(description="the one prompt used at training, evaluation and in the GGUF")
    max_input_chars: int = Field(2000, description="inputs are cut to this many characters everywhere, so prompts fit")
    metrics: list[str] = ["accuracy", "macro_f1"]
    release_gates: ReleaseGates = ReleaseGates()
    encoder_candidate: bool = Field(False, description="classification: when the fine-tune fails a release gate, release "
                                                       "the MiniLM + LR baseline instead if it passes every gate, served "
                                                       "by the same runtime and named as such in the report and card")
    golden_sha256: str | None = Field(None, description="content hash locking the golden set")
    fallback_label: str | None = Field(None, description="classification: the label for out-of-scope inputs; answers "
                                                         "below `abstain_below` confidence become it")
    abstain_below: float = Field(0.0, ge=0.0, le=1.0, description="confidence under which the served path abstains")
    input_style: Literal["email", "chat", "document"] = Field("email", description="what inputs look like; the augmenter "
                                                              "applies only operations that fit it (mail headers, quoted "
                                                              "replies, signatures: email only)")
    recipe: str = Field("default", description="the recipe (under factory/recipes/ or a YAML path) a first version "
                                               "trains with; later versions keep their predecessor's")
    files: TaskFiles = TaskFiles()
    generation: GenerationSpec = GenerationSpec()
    production: ProductionSpec = ProductionSpec()
    folder: Path = Field(Path("."), exclude=True)

    @model_validator(mode="after")
    def _fallback_is_a_label(self) -> TaskSpec:
        if self.fallback_label is not None and self.fallback_label not in (self.contract.labels or {}):
            raise ValueError(f"fallback_label {self.fallback_label!r} is not one of the contract's labels")
        if self.abstain_below > 0 and self.fallback_label is None:
            raise ValueError("abstain_below needs a fallback_label to answer with")
        return self

    def build_contract(self) -> Contract:
        return build_contract(self.contract.model_dump(exclude_none=True))

    def messages(self, text: str) -> list[dict[str, str]]:
        return chat_messages(self.system_prompt, text, self.max_input_chars)

    def path(self, name: str) -> Path:
        return self.folder / getattr(self.files, name)


def load_task(folder: str | Path) -> TaskSpec:
    folder = Path(folder)
    check_task_name(folder.name, where=folder)
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
        if spec.name != folder.name:
            raise DataError(path, f"name is {spec.name!r} but the folder is {folder.name!r}; they must match", field="name")
    except ValidationError as exc:
        first = exc.errors()[0]
        raise DataError(path, first["msg"], field=".".join(str(p) for p in first["loc"])) from None
    except ContractError as exc:
        raise DataError(path, str(exc), field="contract") from None
    return spec
