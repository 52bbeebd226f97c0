"""OpenAI-compatible chat endpoints (OpenAI, vLLM, Ollama, llama.cpp's server): the reference model and the teacher's
HTTP backend share one client with retries."""
from __future__ import annotations

import os
import random
import time
from collections.abc import Callable

import dagster as dg
from pydantic import Field

RETRY_CAP_S = 20.0


class EndpointError(RuntimeError):
    """A request that failed for good: after its retries, or at once when retrying cannot help (4xx)."""

    def __init__(self, message: str, attempts: int):
        super().__init__(message)
        self.attempts = attempts


def post_chat(base_url: str, body: dict, api_key: str, timeout_s: float, retries: int, backoff_s: float = 0.5,
              sleep: Callable[[float], None] = time.sleep) -> tuple[dict, int]:
    """The endpoint's JSON reply and the tries it took. Connection errors, timeouts, 429, 5xx and replies that are
    not JSON are retried with exponential backoff and full jitter (429's Retry-After is honoured); other 4xx are not."""
    import requests

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    url = f"{base_url.rstrip('/')}/chat/completions"
    for attempt in range(1, retries + 1):
        wait = random.uniform(0, min(RETRY_CAP_S, backoff_s * 2 ** attempt))
        try:
            reply = requests.post(url, json=body, headers=headers, timeout=timeout_s)
            if reply.status_code == 429:
                problem = "HTTP 429 (rate limited)"
                retry_after = reply.headers.get("Retry-After", "")
                wait = float(retry_after) if retry_after.replace(".", "", 1).isdigit() else wait
            elif reply.status_code >= 500:
                problem = f"HTTP {reply.status_code}"
            elif reply.status_code >= 400:
                raise EndpointError(f"HTTP {reply.status_code} from {url}: {reply.text[:200]}", attempt)
            else:
                try:
                    payload = reply.json()
                    payload["choices"][0]["message"]
                    return payload, attempt
                except (ValueError, KeyError, IndexError, TypeError):
                    problem = f"a reply that is not an OpenAI chat completion: {reply.text[:120]!r}"
        except requests.Timeout:
            problem = f"no answer within {timeout_s:g} s"
        except requests.ConnectionError as exc:
            problem = f"cannot connect to {url}: {type(exc).__name__}"
        if attempt == retries:
            raise EndpointError(f"{problem}; gave up after {retries} tries", attempt)
        sleep(min(wait, RETRY_CAP_S))
    raise AssertionError("unreachable")


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
        """The answer and the usage the endpoint reports; raises EndpointError after `retries` failed tries."""
        body = {"model": self.model, "messages": messages, "temperature": 0, "max_tokens": max_tokens}
        payload, _ = post_chat(self.base_url, body, os.environ.get(self.api_key_env, ""), self.timeout_s, self.retries)
        return payload["choices"][0]["message"]["content"] or "", payload.get("usage", {})

    def cost(self, usage: dict) -> float:
        return (usage.get("prompt_tokens", 0) * self.price_per_1k_input_tokens
                + usage.get("completion_tokens", 0) * self.price_per_1k_output_tokens) / 1000
