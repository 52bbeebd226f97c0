"""The one way a row becomes chat messages, shared by training, evaluation and serving."""
from __future__ import annotations


def chat_messages(system_prompt: str, text: str, max_input_chars: int) -> list[dict[str, str]]:
    # Cut by characters, not tokens, so HF and llama.cpp see the very same prompt.
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": text[:max_input_chars]}]

