"""Prompts as the GGUF renders them: its own embedded chat template, compiled once."""
from __future__ import annotations


class GGUFPrompt:
    """The ids llama-cpp-python's chat completion feeds the model for some messages.

    The template is compiled once: compiling it per request cost ~2 ms, a few percent of a request.
    """

    def __init__(self, llm):
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.llm = llm
        self.eos_text = llm.detokenize([llm.token_eos()], special=True).decode("utf-8", "replace")
        bos = llm.detokenize([llm.token_bos()], special=True).decode("utf-8", "replace") if llm.token_bos() >= 0 else ""
        self.template = llm.metadata["tokenizer.chat_template"]
        self.formatter = Jinja2ChatFormatter(template=self.template, eos_token=self.eos_text, bos_token=bos)

    def text(self, messages: list[dict]) -> str:
        return self.formatter(messages=messages).prompt

    def ids(self, messages: list[dict]) -> list[int]:
        # The template writes BOS where the model wants one (Gemma, Llama 3); chat completion adds none either.
        return self.llm.tokenize(self.text(messages).encode("utf-8"), add_bos=False, special=True)


def single_turn_template(gguf_path: str, system_marker: str, prompt_marker: str) -> tuple[str, list[str]]:
    """The GGUF's prompt for one system and one user turn with markers in their place, and its stop token's text."""
    from llama_cpp import Llama

    prompt = GGUFPrompt(Llama(model_path=gguf_path, vocab_only=True, verbose=False))
    rendered = prompt.text([{"role": "system", "content": system_marker}, {"role": "user", "content": prompt_marker}])
    return rendered, [prompt.eos_text]
