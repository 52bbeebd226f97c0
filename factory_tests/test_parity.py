"""The GGUF parity check fails on a broken export, and its failure stops the eval report in a materialisation."""
import json
import shutil

import numpy as np
import pytest

from factory.training.export_gguf import primary_gguf
from factory.training.parity import template_parity

CONVERSATIONS = [[{"role": "system", "content": "Sort it."}, {"role": "user", "content": "Where is my parcel?"}]]


def break_gguf(path, eos: int | None = None, template: tuple[str, str] | None = None) -> None:
    """Edit a GGUF's metadata in place with the `gguf` package: the EOS id, or the chat template (same byte length)."""
    import gguf

    reader = gguf.GGUFReader(path, "r+")
    if eos is not None:
        field = reader.get_field("tokenizer.ggml.eos_token_id")
        field.parts[field.data[0]][0] = eos
    if template is not None:
        raw = reader.get_field("tokenizer.chat_template").parts[-1]
        text = bytes(raw).decode("utf-8")
        edited = text.replace(*template).encode("utf-8")
        assert edited != text.encode("utf-8") and len(edited) == len(raw)
        raw[:] = np.frombuffer(edited, dtype=np.uint8)
    reader.data.flush()


@pytest.fixture
def broken_copy(released_version, tmp_path):
    _, _, gguf = primary_gguf(released_version["version"] / "gguf_model")
    copy = tmp_path / gguf.name
    shutil.copy(gguf, copy)
    return copy, str(released_version["version"] / "lora_adapter" / "adapter")


def test_the_exported_gguf_passes_parity(released_version, broken_copy):
    copy, adapter = broken_copy
    assert template_parity(str(copy), adapter, CONVERSATIONS) == []


def test_a_wrong_eos_id_is_reported(broken_copy):
    copy, adapter = broken_copy
    break_gguf(copy, eos=0)
    problems = template_parity(str(copy), adapter, CONVERSATIONS)
    assert len(problems) == 1 and problems[0].startswith("EOS differs: GGUF 0 vs tokenizer 2 ('<|im_end|>')")


def test_a_changed_template_is_reported_where_the_ids_part(broken_copy):
    copy, adapter = broken_copy
    break_gguf(copy, template=("'<|im_start|>assistant\n'", "'<|im_start|>Assistant\n'"))
    problems = template_parity(str(copy), adapter, CONVERSATIONS)
    assert problems and problems[0].startswith("conversation 0: prompt ids differ from position ")


def test_a_template_that_no_longer_renders_is_reported_not_raised(broken_copy):
    copy, adapter = broken_copy
    break_gguf(copy, template=("message['role']", "message['ROLE']"))
    problems = template_parity(str(copy), adapter, CONVERSATIONS)
    assert problems == ["the GGUF's chat template does not render: 'dict object' has no attribute 'ROLE'"]


def test_a_failed_parity_check_stops_the_eval_report(released_version, tmp_path, model_cache):
    import dagster as dg

    from factory.definitions import defs
    from factory.defs.resources import factory_resources

    root = tmp_path / "data"
    shutil.copytree(released_version["root"] / "tasks", root / "tasks")
    shutil.copytree(released_version["version"], root / "versions" / "tiny.v1",
                    ignore=shutil.ignore_patterns("eval_report", "released_model"))
    break_gguf(primary_gguf(root / "versions" / "tiny.v1" / "gguf_model")[2], eos=0)  # copytree copied, not linked
    loaded = defs()
    # The export's check and the report, without exporting again: the check reads the (broken) file on disk.
    selection = dg.AssetSelection.checks_for_assets(dg.AssetKey("gguf_model")) | dg.AssetSelection.assets("eval_report")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("dataset_version", ["tiny.v1"])
        result = dg.materialize([*loaded.assets, *loaded.asset_checks], selection=selection, partition_key="tiny.v1",
                                instance=instance, resources=factory_resources(str(root), str(model_cache)),
                                raise_on_error=False)
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks["gguf_prompt_parity"].passed is False
    assert "EOS differs" in json.dumps(checks["gguf_prompt_parity"].metadata["problems"].value)
    assert not (root / "versions" / "tiny.v1" / "eval_report").exists()
    assert not any(e.asset_key == dg.AssetKey("eval_report") for e in result.get_asset_materialization_events())
