"""Does the GGUF see the prompt the model was trained on? Compares token ids and the end-of-turn token.

llama.cpp renders prompts with the chat template stored in the GGUF; transformers with the
tokenizer's. A lost template, a changed BOS rule or a different EOS silently breaks the
exported model, so this runs as a blocking check on every export.
"""
from __future__ import annotations

from jinja2 import TemplateError

from factory.runtime.prompt import GGUFPrompt


def template_parity(gguf_path: str, tokenizer_dir: str, conversations: list[list[dict]]) -> list[str]:
    """Problems found (empty when the GGUF matches the training tokenizer on every conversation)."""
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    llm = Llama(model_path=gguf_path, vocab_only=True, verbose=False)
    problems = []
    if "tokenizer.chat_template" not in llm.metadata:
        return ["the GGUF has no tokenizer.chat_template"]
    end_of_turn = tokenizer.convert_tokens_to_ids(tokenizer.eos_token)
    if llm.token_eos() != end_of_turn:
        problems.append(f"EOS differs: GGUF {llm.token_eos()} vs tokenizer {end_of_turn} ({tokenizer.eos_token!r})")
    prompt = GGUFPrompt(llm)
    for i, messages in enumerate(conversations):
        expected = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
        try:
            got = prompt.ids(messages)
        except TemplateError as exc:
            return [*problems, f"the GGUF's chat template does not render: {exc}"]
        if list(expected) != list(got):
            cut = next((j for j, (a, b) in enumerate(zip(expected, got)) if a != b), min(len(expected), len(got)))
            problems.append(f"conversation {i}: prompt ids differ from position {cut} "
                            f"(HF {list(expected[cut:cut + 5])} vs GGUF {list(got[cut:cut + 5])})")
    return problems
