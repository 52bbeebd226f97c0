"""Training recipes: versioned YAML under factory/recipes/, hashed so a changed recipe marks the adapter stale."""
from __future__ import annotations

import hashlib
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


def recipes_hash() -> str:
    digest = hashlib.sha256()
    for path in sorted(RECIPES_DIR.glob("*.yaml")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]
