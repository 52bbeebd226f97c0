"""Tier 4: the code location loads, and the graph is one lineage partitioned by dataset version."""
import dagster as dg

from factory.definitions import defs

STAGES = ["eval_sets", "seed_examples", "generated_examples", "judged_examples", "accepted_examples", "dataset_splits",
          "baseline_report", "training_recipe", "lora_adapter", "gguf_model", "eval_report", "released_model"]

TRAFFIC = ["production_logs", "review_queue", "reviewed_examples"]


def test_definitions_load_and_validate():
    dg.Definitions.validate_loadable(defs())


def test_every_stage_is_a_partitioned_asset_in_one_graph():
    loaded = defs()
    graph = loaded.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == set(STAGES) | set(TRAFFIC)
    for name in TRAFFIC:
        assert graph.get(dg.AssetKey(name)).partitions_def.name == "served_task"
        assert graph.get(dg.AssetKey(name)).group_name == "traffic"
    for name in STAGES:
        node = graph.get(dg.AssetKey(name))
        assert node.partitions_def.name == "dataset_version", name
    upstream = graph.get(dg.AssetKey("eval_report")).parent_keys
    assert {k.to_user_string() for k in upstream} == {"gguf_model", "lora_adapter", "baseline_report", "eval_sets"}
    assert graph.get(dg.AssetKey("seed_examples")).group_name == "dataset"
    assert graph.get(dg.AssetKey("lora_adapter")).group_name == "model"


def test_blocking_checks_guard_the_dataset_and_the_export():
    loaded = defs()
    specs = {spec.name: spec for checks_def in loaded.asset_checks for spec in checks_def.check_specs}
    assert specs["accepted_examples_hold"].blocking and specs["gguf_prompt_parity"].blocking
    assert specs["release_gates_pass"].blocking and specs["release_gates_pass"].asset_key == dg.AssetKey("eval_report")
    upstream = defs().resolve_asset_graph().get(dg.AssetKey("released_model")).parent_keys
    assert dg.AssetKey("eval_report") in upstream  # so the failed gate check blocks the release


def test_the_fine_tune_code_version_is_its_training_code_and_recipes_are_data():
    from factory.lib.recipes import training_code_version

    graph = defs().resolve_asset_graph()
    node = graph.get(dg.AssetKey("lora_adapter"))
    assert node.code_version == training_code_version()
    assert dg.AssetKey("training_recipe") in node.parent_keys
