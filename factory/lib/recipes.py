"""Training recipes: versioned YAML under factory/recipes/, hashed so a changed recipe marks the adapter stale."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml

from factory.lib.errors import DataError

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"


def load_recipe(name_or_path: str) -> dict:
    path = Path(name_or_path)
    if not path.suffix:
        path = RECIPES_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
        raise DataError(path, f"recipe not found; packaged recipes: {known}, or give a path to a .yaml file")
    recipe = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(recipe, dict):
        raise DataError(path, "a recipe is a mapping of SFT settings")
    return recipe


def recipe_fingerprint(name_or_path: str) -> tuple[dict, str]:
    """The recipe's settings and a hash of them (not of the file's bytes: a comment or key order changes nothing)."""
    recipe = load_recipe(name_or_path)
    return recipe, hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


TRAINING_CODE = [Path(__file__).resolve().parents[1] / "training" / name for name in ("sft.py", "task_metric.py", "distill.py")]


def training_code_version() -> str:
    """The fine-tune's code version: the training code itself; recipes enter as the `training_recipe` asset's data."""
    digest = hashlib.sha256()
    for path in TRAINING_CODE:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
