"""Base models without a chat template (Gemma 3 270M as published, most pretrained models): the template comes
from a file, EOS becomes the token that ends the assistant's turn, and llama.cpp sees both after export."""
import json
import os
import shutil

import pytest

from factory.integrations.models import _cache_name, end_of_turn_token, hf_model_dir, packaged_gguf, template_path

CONVERSATION = [{"role": "system", "content": "Classify the message."}, {"role": "user", "content": "Where is my parcel?"}]


@pytest.fixture(scope="module")
def templateless_base(model_cache, tmp_path_factory):
    """The packaged SmolLM2 stripped to what a pretrained-only model ships: no template, EOS is end-of-text."""
    folder = tmp_path_factory.mktemp("base") / "smollm2-no-template"
    shutil.copytree(hf_model_dir("smollm2-135m", model_cache), folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    for name, edit in (("tokenizer_config.json", {"eos_token": "<|endoftext|>"}), ("generation_config.json", {"eos_token_id": 0})):
        config = json.loads((folder / name).read_text())
        config.pop("chat_template", None)
        (folder / name).write_text(json.dumps({**config, **edit}))
    return folder


def test_a_base_model_without_a_template_is_refused_with_the_setting_to_use(templateless_base, tmp_path):
    with pytest.raises(ValueError, match="has no chat template.*FACTORY_CHAT_TEMPLATE.*chatml.*gemma"):
        hf_model_dir(str(templateless_base), tmp_path)
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_a_template_file_gives_the_model_its_turns_and_stop_token_through_export(templateless_base, model_cache, tmp_path):
    from transformers import AutoTokenizer, GenerationConfig

    from factory.integrations.resources import BaseModel
    from factory.integrations.storage import FactoryStorage
    from factory.training import export_gguf
    from factory.training.parity import template_parity

    folder = hf_model_dir(str(templateless_base), tmp_path, "chatml")
    assert folder != templateless_base and hf_model_dir(str(templateless_base), tmp_path, "chatml") == folder
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.eos_token == "<|im_end|>"
    assert GenerationConfig.from_pretrained(folder).eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>") != 0
    # The packaged ChatML file renders exactly what SmolLM2-Instruct's own template renders.
    instruct = AutoTokenizer.from_pretrained(hf_model_dir("smollm2-135m", model_cache))
    assert tokenizer.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True) == \
        instruct.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True)

    exported = export_gguf.main(export_gguf.ExportConfig(base_model_dir=str(folder), output_dir=str(tmp_path / "gguf")),
                                log=lambda _: None)
    assert template_parity(str(tmp_path / "gguf" / exported["files"]["q8_0"]["file"]), str(folder), [CONVERSATION]) == []

    # The untrained baseline must come from that export, not from the source GGUF that lacks the template.
    base = BaseModel(storage=FactoryStorage(data_root=str(tmp_path), cache_root=str(tmp_path)), spec="smollm2-135m",
                     chat_template="chatml")
    assert base.source_gguf() is None


def test_a_model_that_wants_bos_gets_it_once_from_its_template_in_llama_cpp(templateless_base, tmp_path):
    """Gemma and Llama 3 templates write BOS themselves while their GGUFs also ask for BOS: add it once."""
    from gguf import GGUFReader
    from llama_cpp import Llama

    from factory.runtime.prompt import GGUFPrompt
    from factory.training import export_gguf
    from factory.training.parity import template_parity

    template = tmp_path / "bos_chatml.jinja"
    template.write_text("{{ bos_token }}" + template_path("chatml").read_text())
    folder = hf_model_dir(str(templateless_base), tmp_path, str(template))
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "bos_token": "<|endoftext|>"}))
    exported = export_gguf.main(export_gguf.ExportConfig(base_model_dir=str(folder), output_dir=str(tmp_path / "gguf")),
                                log=lambda _: None)
    gguf = str(tmp_path / "gguf" / exported["files"]["q8_0"]["file"])
    # Declare BOS as Gemma's GGUF does (edited in place, as gguf's gguf_set_metadata script does).
    fields = GGUFReader(gguf, "r+").fields
    for key, value in (("tokenizer.ggml.add_bos_token", True), ("tokenizer.ggml.bos_token_id", 0)):
        fields[key].parts[fields[key].data[0]][0] = value
    llm = Llama(model_path=gguf, vocab_only=True, verbose=False)
    assert llm._model.add_bos_token() and llm.token_bos() == 0
    ids = GGUFPrompt(llm).ids(CONVERSATION)
    assert ids[:2] == [0, llm.tokenize(b"<|im_start|>", add_bos=False, special=True)[0]]
    assert template_parity(gguf, str(folder), [CONVERSATION]) == []


def test_a_template_that_ends_a_turn_with_plain_text_is_refused(templateless_base):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(templateless_base)
    tokenizer.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    with pytest.raises(ValueError, match="not a special token"):
        end_of_turn_token(tokenizer)


def test_an_unknown_template_name_lists_the_packaged_ones():
    with pytest.raises(FileNotFoundError, match=r"\['chatml', 'gemma'\]"):
        template_path("llama9")


def test_a_gguf_named_by_path_shares_the_packaged_names_cached_copy_until_the_file_changes(model_cache, tmp_path):
    packaged = packaged_gguf("smollm2-135m")
    cached = hf_model_dir("smollm2-135m", model_cache)
    assert hf_model_dir(str(packaged), model_cache) == cached  # no second dequantization of the same file
    copy = tmp_path / packaged.name
    shutil.copy(packaged, copy)
    first = _cache_name(str(copy), copy, None)
    assert first != cached.name  # another file, another copy
    os.utime(copy, ns=(copy.stat().st_atime_ns, copy.stat().st_mtime_ns + 1))
    assert _cache_name(str(copy), copy, None) != first  # overwritten in place: the old copy is not reused
