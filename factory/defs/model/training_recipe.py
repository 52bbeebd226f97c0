import json

import dagster as dg
import yaml
from pydantic import Field

from factory.defs.automation import ON_NEW_VERSION
from factory.defs.partitions import dataset_versions
from factory.integrations.storage import FactoryStorage
from factory.lib.files import atomic_dir, write_json
from factory.lib.recipes import recipe_fingerprint
from factory.lib.versions import parse_version_key, version_key


class RecipeConfig(dg.Config):
    recipe: str = Field(default="", description="a recipe under factory/recipes/ or a YAML path; empty: the one this "
                                                "version already uses, else the previous version's, else the task's")


@dg.asset(partitions_def=dataset_versions, automation_condition=ON_NEW_VERSION, kinds={"yaml"})
def training_recipe(context: dg.AssetExecutionContext, config: RecipeConfig, storage: FactoryStorage) -> dg.MaterializeResult:
    """The recipe this version trains with, snapshotted; its data version is the recipe's content hash, so editing a
    recipe file and refreshing this asset stales exactly the fine-tunes that used that recipe."""
    key = context.partition_key
    folder = storage.asset_dir(key, "training_recipe")
    name = config.recipe or _inherited_recipe(storage, key)
    recipe, digest = recipe_fingerprint(name)
    with atomic_dir(folder) as scratch:
        (scratch / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=True), encoding="utf-8")
        write_json(scratch / "source.json", {"recipe": name, "sha256": digest})
    return dg.MaterializeResult(metadata={"recipe": name, "sha256": digest, "settings": dg.MetadataValue.json(recipe)},
                                data_version=dg.DataVersion(digest))


def _inherited_recipe(storage: FactoryStorage, key: str) -> str:
    """The recipe this version last used, else the nearest earlier version's (a retrain keeps what won), else the one
    the task names."""
    task, number = parse_version_key(key)
    for n in range(number, 0, -1):
        source = storage.asset_dir(version_key(task, n), "training_recipe") / "source.json"
        if source.exists():
            return json.loads(source.read_text())["recipe"]
    return storage.task_for(key).recipe
