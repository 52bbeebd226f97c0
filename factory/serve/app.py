"""`factory serve`: a task's champion behind HTTP through the product runtime, every request logged with PII scrubbed.

FastAPI + uvicorn: the stack llama-cpp-python's own server runs on, so it comes with the runtime at no extra install.
"""
from __future__ import annotations

import datetime as dt
import hmac
import ipaddress
import logging
import queue
import threading
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from factory.integrations.request_log import RequestLog
from factory.lib.errors import DataError
from factory.lib.hardware import usable_cores
from factory.lib.pii import scrub
from factory.lib.task import TaskSpec, load_task
from factory.lib.versions import check_task_name
from factory.runtime.champion import released_model_path
from factory.runtime.classifier import PromptTooLong


@dataclass
class ServeSettings:
    task: str
    data_root: Path
    version: str | None = None  # pin one released version; None follows the task's champion alias
    host: str = "127.0.0.1"
    api_key: str = ""  # required to bind anything but loopback; then checked on every call
    max_body_bytes: int = 256 * 1024
    max_batch: int = 64
    reload_seconds: float = 30.0  # how often the champion alias is looked up
    log_max_bytes: int = 64 * 2**20
    threads: int = 0  # llama.cpp threads in all; 0: every core this process may use
    workers: int = 1  # copies of the model answering side by side, each on its share of the threads


ROUTES = ("/v1/classify", "/v1/chat/completions", "/v1/feedback", "/healthz", "/metrics")
log_errors = logging.getLogger("factory.serve")


def check_binding(host: str, api_key: str) -> None:
    """Refuse to listen beyond this machine without an API key."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not api_key:
        raise DataError("--host", f"refusing to serve on {host} without an API key: set FACTORY_API_KEY (clients send "
                                  "'Authorization: Bearer <key>'), or bind 127.0.0.1")


class ClassifierPool:
    """Copies of one model, each answering one request at a time on its share of the cores, so concurrent requests run
    side by side. Each answer is the one the model gives alone: no request shares a forward pass with another (batching
    them moved confidences by up to 0.07, bench/LOG.md), and llama.cpp's sums do not depend on the thread count."""

    def __init__(self, classifiers: list):
        self.classifiers, self.idle = classifiers, queue.SimpleQueue()
        for classifier in classifiers:
            self.idle.put(classifier)

    def classify(self, text: str):
        classifier = self.idle.get()
        try:
            return classifier.classify(text)
        finally:
            self.idle.put(classifier)


class ModelSlot:
    """The model answering now. A new champion is loaded beside the old one and swapped in whole: a request in flight
    keeps the model it started with, and every answer names the version that produced it."""

    def __init__(self, settings: ServeSettings, task: TaskSpec):
        self.settings, self.task = settings, task
        self.current = self._load(*released_model_path(settings.data_root, settings.task, settings.version))

    def _load(self, path: Path, version: str):
        from factory.runtime.encoder import released_classifier

        workers = max(1, self.settings.workers)
        threads = max(1, (self.settings.threads or usable_cores()) // workers)
        return ClassifierPool([released_classifier(path, self.task, threads) for _ in range(workers)]), version

    def refresh(self) -> bool:
        """Swap to the champion when the alias has moved; True when it did."""
        if self.settings.version:
            return False
        path, version = released_model_path(self.settings.data_root, self.settings.task, None)
        if version == self.current[1]:
            return False
        self.current = self._load(path, version)
        return True


class ClassifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str | None = Field(None, min_length=1, description="one input")
    texts: list[str] | None = Field(None, min_length=1, description="a batch of inputs")


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(min_length=1, max_length=64)
    label: str = Field(description="the correct label")
    note: str | None = Field(None, max_length=2000)


class ChatMessage(BaseModel):
    role: str
    content: str | list[dict] | None = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # OpenAI clients send sampling fields the label path does not use
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)


def _metrics(registry: CollectorRegistry) -> dict:
    return {
        "requests": Counter("factory_requests", "HTTP requests by endpoint and status", ["endpoint", "status"],
                            registry=registry),
        "latency": Histogram("factory_request_latency_seconds", "request latency", ["endpoint"], registry=registry,
                             buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)),
        "model": Gauge("factory_model_info", "the model version answering (1)", ["task", "version"], registry=registry),
    }


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "status": status}}, status_code=status)


def _user_text(messages: list[ChatMessage]) -> str | None:
    for message in reversed(messages):
        if message.role == "user":
            if isinstance(message.content, str):
                return message.content
            if isinstance(message.content, list):
                return "".join(part.get("text", "") for part in message.content if part.get("type") == "text")
    return None


def create_app(settings: ServeSettings) -> FastAPI:
    check_task_name(settings.task, where="--task")
    check_binding(settings.host, settings.api_key)
    task = load_task(settings.data_root / "tasks" / settings.task)
    labels = set(task.contract.labels or {})
    slot = ModelSlot(settings, task)
    scrub("warm-up")  # Presidio builds its engines on first use (~4 s): here, not on the first request
    log = RequestLog(settings.data_root / "traffic" / settings.task / "logs", max_bytes=settings.log_max_bytes)
    registry = CollectorRegistry()
    metrics = _metrics(registry)
    metrics["model"].labels(settings.task, slot.current[1]).set(1)
    stop = threading.Event()

    def follow_champion() -> None:
        while not stop.wait(settings.reload_seconds):
            previous = slot.current[1]
            try:
                if slot.refresh():
                    metrics["model"].remove(settings.task, previous)
                    metrics["model"].labels(settings.task, slot.current[1]).set(1)
            except Exception:  # a broken registry or GGUF must not take the serving model down
                log_errors.exception(f"keeping {previous}: could not load the new champion")

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        watcher = threading.Thread(target=follow_champion, name="champion-watcher", daemon=True)
        watcher.start()
        yield
        stop.set()

    app = FastAPI(title=f"factory: {settings.task}", lifespan=lifespan)
    app.state.slot, app.state.log = slot, log

    @app.middleware("http")
    async def guard(request: Request, call_next):
        # Unknown paths share one label: a client must not be able to grow the metrics without bound.
        started, endpoint = time.perf_counter(), request.url.path if request.url.path in ROUTES else "other"
        if settings.api_key:
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), settings.api_key.encode()):
                response = _error(401, "missing or wrong API key: send 'Authorization: Bearer <key>'")
                metrics["requests"].labels(endpoint, "401").inc()
                return response
        if request.method == "POST":
            kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
            length = request.headers.get("content-length")
            if kind != "application/json":
                response = _error(415, "send a JSON body with 'Content-Type: application/json'")
            elif length is None or not length.isdigit():
                response = _error(411, "send a Content-Length header")
            elif int(length) > settings.max_body_bytes:
                response = _error(413, f"body of {length} bytes is over the limit of {settings.max_body_bytes}")
            else:
                response = await call_next(request)
        else:
            response = await call_next(request)
        metrics["requests"].labels(endpoint, str(response.status_code)).inc()
        metrics["latency"].labels(endpoint).observe(time.perf_counter() - started)
        return response

    @app.exception_handler(PromptTooLong)
    async def too_long(_: Request, exc: PromptTooLong):
        return _error(413, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError):
        # Name the field and the problem, never echo the input (it may be large or personal).
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors())
        return _error(422, problems)

    def answer(text: str, endpoint: str) -> dict:
        classifier, version = slot.current
        request_id = uuid.uuid4().hex
        result = classifier.classify(text)
        scrubbed = scrub(text)
        log.append({"type": "request", "id": request_id, "time": dt.datetime.now(dt.UTC).isoformat(),
                    "task": settings.task, "model_version": version, "endpoint": endpoint, "input": scrubbed.text,
                    "pii": list(scrubbed.kinds), "output": result.label, "confidence": round(result.confidence, 6),
                    "abstained": result.abstained, "latency_ms": round(result.latency_ms, 3),
                    "parse": "ok" if result.label is not None else "invalid"})
        return {"request_id": request_id, "label": result.label, "confidence": round(result.confidence, 6),
                "abstained": result.abstained, "model_version": version}

    @app.post("/v1/classify")
    def classify(body: ClassifyRequest):
        if (body.text is None) == (body.texts is None):
            return _error(422, "send exactly one of 'text' (one input) or 'texts' (a batch)")
        texts = [body.text] if body.text is not None else body.texts
        if len(texts) > settings.max_batch:
            return _error(413, f"batch of {len(texts)} texts is over the limit of {settings.max_batch}")
        if any(not t.strip() for t in texts):
            return _error(422, "every text must be non-empty")
        results = [answer(t, "classify") for t in texts]
        return results[0] if body.text is not None else {"results": results}

    @app.post("/v1/chat/completions")
    def chat_completions(body: ChatRequest):
        text = _user_text(body.messages)
        if not text or not text.strip():
            return _error(422, "messages: no user message with text content")
        result = answer(text, "chat")
        return {"id": f"chatcmpl-{result['request_id']}", "object": "chat.completion", "created": int(time.time()),
                "model": result["model_version"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": result["label"]}}],
                "factory": result}

    @app.post("/v1/feedback")
    def feedback(body: FeedbackRequest):
        if body.label not in labels:
            return _error(422, f"label: {body.label!r} is not one of the task's labels: {sorted(labels)}")
        record = {"type": "feedback", "id": uuid.uuid4().hex, "time": dt.datetime.now(dt.UTC).isoformat(),
                  "task": settings.task, "request_id": body.request_id, "label": body.label}
        if body.note:
            note = scrub(body.note)
            record |= {"note": note.text, "pii": list(note.kinds)}
        log.append(record)
        return {"feedback_id": record["id"], "request_id": body.request_id}

    @app.get("/healthz")
    def healthz():
        return {"status": "ok", "task": settings.task, "model_version": slot.current[1]}

    @app.get("/metrics")
    def prometheus():
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


def serve(settings: ServeSettings, port: int) -> None:
    import uvicorn

    uvicorn.run(create_app(settings), host=settings.host, port=port, log_level="warning")
