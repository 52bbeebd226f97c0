"""The teacher: the model that writes and judges rows. One resource, two backends:

- `http`: any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp's server), requests in parallel up to
  `max_concurrency`, each retried with backoff and jitter (`post_chat`);
- `local`: a GGUF run in this process by llama.cpp (the packaged model unless `gguf` names another), one request at
  a time.

Every finished reply is cached on disk by its prompt and sampling settings before the next is awaited, so a run that
dies or is re-run asks again only for what it does not have.
"""
from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import dagster as dg
from pydantic import Field

from factory.integrations.llm_client import EndpointError, post_chat
from factory.integrations.storage import FactoryStorage
from factory.lib.files import write_json
from factory.lib.hardware import usable_cores
from factory.lib.teacher import prompt_key


@dataclass
class Completion:
    key: str  # the cache key: prompt and sampling settings; rows name their raw output by it
    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 0
    cached: bool = False
    error: str | None = None
    created_at: str = ""  # when the teacher wrote it (UTC), kept in the cache so a re-run's rows are identical


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.9
    max_tokens: int = 600
    seed: int = 0
    json_schema: dict | None = None  # constrain the reply where the backend can


class Teacher(dg.ConfigurableResource):
    """The model that writes rows (`generated_examples`) and judges them (`judged_examples`)."""

    storage: FactoryStorage
    backend: Literal["none", "http", "local"] = Field(default="none", description="none: no teacher; http: an "
                                                      "OpenAI-compatible endpoint; local: a GGUF in this process")
    base_url: str = Field(default="", description="http: e.g. http://127.0.0.1:8080/v1 or https://api.openai.com/v1")
    model: str = Field(default="", description="http: the model name the endpoint expects")
    api_key_env: str = Field(default="FACTORY_TEACHER_API_KEY", description="environment variable holding the key")
    gguf: str = Field(default="", description="local: a .gguf path; empty: the packaged SmolLM2-135M")
    structured_output: Literal["llama_cpp", "openai", "off"] = Field(
        default="llama_cpp", description="http: how to ask for JSON that fits a schema: llama.cpp's server "
                                         "(json_object + schema), OpenAI's json_schema, or not at all")
    max_concurrency: int = Field(default=4, ge=1, description="http: requests in flight at once")
    timeout_s: float = Field(default=120.0, description="http: per request")
    retries: int = Field(default=4, ge=1, description="http: tries per request")
    backoff_s: float = Field(default=0.5, description="http: the first retry waits up to twice this (full jitter), "
                                                      "each next one up to twice as long, at most 20 s")
    n_ctx: int = Field(default=4096, description="local: context window")
    price_per_1k_input_tokens: float = Field(default=0.0, description="for the cost of generation in the metadata")
    price_per_1k_output_tokens: float = Field(default=0.0)

    @property
    def configured(self) -> bool:
        return self.backend != "none"

    def describe(self) -> dict:
        """What rows record as their teacher."""
        if self.backend == "http":
            return {"teacher_backend": "http", "teacher_model": self.model or "default", "teacher_url": self.base_url}
        return {"teacher_backend": self.backend, "teacher_model": Path(self._gguf_path()).name}

    def cost(self, completions: list[Completion]) -> float:
        return sum(c.prompt_tokens * self.price_per_1k_input_tokens + c.completion_tokens * self.price_per_1k_output_tokens
                   for c in completions if not c.cached) / 1000

    def complete(self, prompts: list[list[dict]], sampling: Sampling,
                 on_done: Callable[[int, Completion], None] | None = None) -> list[Completion]:
        """One completion per prompt, in order; failures come back with `error` set, never raised."""
        if not self.configured:
            raise RuntimeError("no teacher configured: set FACTORY_TEACHER_BACKEND (http or local); see README")
        keys = [self._key(p, sampling) for p in prompts]
        results: list[Completion | None] = [self._cached(k) for k in keys]
        todo = [i for i, r in enumerate(results) if r is None]
        for i, r in enumerate(results):
            if r is not None and on_done:
                on_done(i, r)
        lock = threading.Lock()

        def finish(i: int, completion: Completion) -> None:
            if completion.error is None:
                completion.created_at = datetime.now(UTC).isoformat(timespec="seconds")
                write_json(self._cache_path(completion.key), {"text": completion.text, "prompt_tokens": completion.prompt_tokens,
                                                              "completion_tokens": completion.completion_tokens,
                                                              "created_at": completion.created_at})
            with lock:
                results[i] = completion
                if on_done:
                    on_done(i, completion)

        if self.backend == "http":
            with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
                futures = {pool.submit(self._http, prompts[i], sampling, keys[i]): i for i in todo}
                for future in as_completed(futures):
                    finish(futures[future], future.result())
        else:
            llm = self._load_local() if todo else None
            for i in todo:
                finish(i, self._local(llm, prompts[i], sampling, keys[i]))
        return results  # type: ignore[return-value]

    def _key(self, messages: list[dict], sampling: Sampling) -> str:
        return prompt_key(messages, backend=self.backend, model=self.describe()["teacher_model"],
                          temperature=sampling.temperature, max_tokens=sampling.max_tokens, seed=sampling.seed,
                          schema=sampling.json_schema)

    def _cache_path(self, key: str) -> Path:
        return self.storage.root / "teacher_cache" / key[:2] / f"{key}.json"

    def _cached(self, key: str) -> Completion | None:
        path = self._cache_path(key)
        if not path.exists():
            return None
        entry = json.loads(path.read_text(encoding="utf-8"))
        return Completion(key=key, text=entry["text"], prompt_tokens=entry["prompt_tokens"],
                          completion_tokens=entry["completion_tokens"], created_at=entry["created_at"], cached=True)

    def _http(self, messages: list[dict], sampling: Sampling, key: str) -> Completion:
        body = {"model": self.model, "messages": messages, "temperature": sampling.temperature,
                "max_tokens": sampling.max_tokens, "seed": sampling.seed}
        if sampling.json_schema and self.structured_output == "llama_cpp":
            body["response_format"] = {"type": "json_object", "schema": sampling.json_schema}
        elif sampling.json_schema and self.structured_output == "openai":
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "reply", "schema": sampling.json_schema}}
        try:
            payload, attempts = post_chat(self.base_url, body, os.environ.get(self.api_key_env, ""), self.timeout_s,
                                          self.retries, self.backoff_s)
        except EndpointError as exc:
            return Completion(key=key, attempts=exc.attempts, error=str(exc))
        usage = payload.get("usage") or {}
        return Completion(key=key, text=payload["choices"][0]["message"].get("content") or "", attempts=attempts,
                          prompt_tokens=int(usage.get("prompt_tokens", 0)),
                          completion_tokens=int(usage.get("completion_tokens", 0)))

    def _gguf_path(self) -> str:
        from factory.integrations.models import packaged_gguf

        return self.gguf or str(packaged_gguf("smollm2-135m"))

    def _load_local(self):
        from llama_cpp import Llama

        return Llama(model_path=self._gguf_path(), n_ctx=self.n_ctx, n_threads=usable_cores(), verbose=False)

    def _local(self, llm, messages: list[dict], sampling: Sampling, key: str) -> Completion:
        started = time.perf_counter()
        kwargs = {}
        if sampling.json_schema:
            kwargs["response_format"] = {"type": "json_object", "schema": sampling.json_schema}
        try:
            reply = llm.create_chat_completion(messages=messages, temperature=sampling.temperature,
                                               max_tokens=sampling.max_tokens, seed=sampling.seed, **kwargs)
        except (ValueError, RuntimeError) as exc:  # a prompt over the context window, a decode failure
            return Completion(key=key, attempts=1, error=f"{type(exc).__name__}: {exc} after {time.perf_counter() - started:.1f} s")
        usage = reply.get("usage") or {}
        return Completion(key=key, text=reply["choices"][0]["message"].get("content") or "", attempts=1,
                          prompt_tokens=int(usage.get("prompt_tokens", 0)), completion_tokens=int(usage.get("completion_tokens", 0)))
