"""An OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, llama.cpp's server): the larger reference model."""
from __future__ import annotations

import os
import time

import dagster as dg
from pydantic import Field


class ChatEndpoint(dg.ConfigurableResource):
    """A larger model behind `POST {base_url}/chat/completions`; empty base_url means none is configured."""

    base_url: str = Field(default="", description="e.g. http://127.0.0.1:8080/v1; empty: no reference model")
    model: str = Field(default="", description="the model name the endpoint expects")
    api_key_env: str = Field(default="FACTORY_REFERENCE_API_KEY", description="environment variable holding the key")
    timeout_s: float = Field(default=60.0)
    retries: int = Field(default=3, description="tries per request on connection errors, 429 and 5xx")
    price_per_1k_input_tokens: float = Field(default=0.0, description="for the report's cost per 1,000 requests")
    price_per_1k_output_tokens: float = Field(default=0.0)

    @property
    def configured(self) -> bool:
        return bool(self.base_url)

    def chat(self, messages: list[dict], max_tokens: int) -> tuple[str, dict]:
        """The answer and the usage the endpoint reports; raises after `retries` failed tries."""
        import requests

        key = os.environ.get(self.api_key_env, "")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        body = {"model": self.model, "messages": messages, "temperature": 0, "max_tokens": max_tokens}
        for attempt in range(1, self.retries + 1):
            try:
                reply = requests.post(f"{self.base_url.rstrip('/')}/chat/completions", json=body, headers=headers,
                                      timeout=self.timeout_s)
                if reply.status_code == 429 or reply.status_code >= 500:
                    raise requests.HTTPError(f"HTTP {reply.status_code}", response=reply)
                reply.raise_for_status()
                payload = reply.json()
                return payload["choices"][0]["message"]["content"] or "", payload.get("usage", {})
            except (requests.ConnectionError, requests.Timeout, requests.HTTPError) as exc:
                retryable = not isinstance(exc, requests.HTTPError) or exc.response is None or \
                    exc.response.status_code == 429 or exc.response.status_code >= 500
                if attempt == self.retries or not retryable:
                    raise
                time.sleep(min(8.0, 0.5 * 2 ** attempt))
        raise AssertionError("unreachable")

    def cost(self, usage: dict) -> float:
        return (usage.get("prompt_tokens", 0) * self.price_per_1k_input_tokens
                + usage.get("completion_tokens", 0) * self.price_per_1k_output_tokens) / 1000
