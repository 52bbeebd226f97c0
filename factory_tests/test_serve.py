"""`factory serve` on the session's released tiny model: answers, logs with PII scrubbed, refusals, metrics, keys."""
from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient

from factory.integrations.request_log import log_files
from factory.lib.errors import DataError
from factory.lib.task import load_task
from factory.serve.app import ServeSettings, check_binding, create_app
from factory_tests.conftest import clone_data_root

LABELS = {"billing", "shipping", "login"}


@pytest.fixture(scope="module")
def root(released_version, tmp_path_factory):
    assert released_version["exit_code"] == 0, released_version["stdout"]
    return clone_data_root(released_version["root"], tmp_path_factory.mktemp("serve") / "data")


@pytest.fixture(scope="module")
def client(root):
    app = create_app(ServeSettings(task="tiny", data_root=root, max_body_bytes=4096, max_batch=4, reload_seconds=3600))
    with TestClient(app) as client:
        yield client


def logged(root) -> list[dict]:
    return [json.loads(line) for p in log_files(root / "traffic" / "tiny" / "logs") for line in p.read_text().splitlines()]


def test_classify_one_and_a_batch_each_logged_once_with_pii_scrubbed(client, root):
    before = len(logged(root))
    one = client.post("/v1/classify", json={"text": "I was charged twice, write to jane.doe@example.com"})
    assert one.status_code == 200
    body = one.json()
    assert body["label"] in LABELS and 0 < body["confidence"] <= 1 and body["model_version"] == "tiny.v1"
    assert re.fullmatch(r"[0-9a-f]{32}", body["request_id"]) and body["abstained"] is False
    batch = client.post("/v1/classify", json={"texts": ["Where is my parcel?", "I cannot log in.", "Double charge."]})
    results = batch.json()["results"]
    assert len({r["request_id"] for r in results}) == 3 and all(r["label"] in LABELS for r in results)
    lines = logged(root)[before:]
    assert [line["id"] for line in lines] == [body["request_id"], *(r["request_id"] for r in results)]
    first = lines[0]
    assert first["input"] == "I was charged twice, write to <EMAIL_ADDRESS>" and first["pii"] == ["EMAIL_ADDRESS"]
    assert first["output"] == body["label"] and first["parse"] == "ok" and first["model_version"] == "tiny.v1"
    assert not any("jane.doe" in p.read_text() for p in log_files(root / "traffic" / "tiny" / "logs"))


def test_chat_completions_answers_like_openai(client):
    response = client.post("/v1/chat/completions", json={
        "model": "anything", "temperature": 0.2,
        "messages": [{"role": "system", "content": "ignored"}, {"role": "user", "content": "Where is my parcel?"}]})
    body = response.json()
    assert response.status_code == 200 and body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["role"] == "assistant" and body["choices"][0]["message"]["content"] in LABELS
    assert body["model"] == "tiny.v1" and body["id"] == f"chatcmpl-{body['factory']['request_id']}"
    parts = client.post("/v1/chat/completions", json={"messages": [
        {"role": "user", "content": [{"type": "text", "text": "Locked out of my account."}]}]})
    assert parts.json()["choices"][0]["message"]["content"] in LABELS
    assert client.post("/v1/chat/completions", json={"messages": [{"role": "system", "content": "x"}]}).status_code == 422


def test_feedback_is_logged_and_a_wrong_label_refused(client, root):
    rid = client.post("/v1/classify", json={"text": "My card was billed twice."}).json()["request_id"]
    ok = client.post("/v1/feedback", json={"request_id": rid, "label": "billing", "note": "call +1 415-555-0132"})
    assert ok.status_code == 200 and ok.json()["request_id"] == rid
    line = logged(root)[-1]
    assert line["type"] == "feedback" and line["request_id"] == rid and line["label"] == "billing"
    assert "555-0132" not in line["note"] and line["pii"] == ["PHONE_NUMBER"]
    bad = client.post("/v1/feedback", json={"request_id": rid, "label": "refunds"})
    assert bad.status_code == 422 and "'refunds' is not one of the task's labels" in bad.json()["error"]["message"]
    assert client.post("/v1/feedback", json={"request_id": rid}).status_code == 422


@pytest.mark.parametrize(("kwargs", "status", "says"), [
    ({"content": b"text=hello", "headers": {"content-type": "text/plain"}}, 415, "Content-Type: application/json"),
    ({"json": {"text": "x" * 5000}}, 413, "over the limit of 4096"),
    ({"json": {"texts": ["a", "b", "c", "d", "e"]}}, 413, "batch of 5 texts"),
    ({"json": {"text": "a", "texts": ["b"]}}, 422, "exactly one of"),
    ({"json": {}}, 422, "exactly one of"),
    ({"json": {"text": ""}}, 422, "text: String should have at least 1 character"),
    ({"json": {"texts": ["ok", "   "]}}, 422, "non-empty"),
    ({"json": {"text": "hi", "mode": "fast"}}, 422, "mode: Extra inputs are not permitted"),
    ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, "JSON decode error"),
])
def test_bad_requests_get_a_clear_4xx_and_leave_no_log_line(client, root, kwargs, status, says):
    before = len(logged(root))
    response = client.post("/v1/classify", **kwargs)
    assert response.status_code == status and says in response.json()["error"]["message"]
    assert "xxxxxxxxxx" not in response.text  # the input is never echoed
    assert len(logged(root)) == before


def counted(text: str, status: str) -> float:
    found = re.search(rf'factory_requests_total\{{endpoint="/v1/classify",status="{status}"\}} (\S+)', text)
    return float(found[1]) if found else 0.0


def test_health_and_prometheus_metrics(client):
    assert client.get("/healthz").json() == {"status": "ok", "task": "tiny", "model_version": "tiny.v1"}
    before = client.get("/metrics").text
    client.post("/v1/classify", json={"text": "Where is my parcel?"})
    client.post("/v1/classify", content=b"x", headers={"content-type": "text/plain"})
    text = client.get("/metrics").text
    assert counted(text, "200") == counted(before, "200") + 1 and counted(text, "415") == counted(before, "415") + 1
    assert 'factory_model_info{task="tiny",version="tiny.v1"} 1.0' in text
    for n in range(3):
        assert client.get(f"/no-such-path-{n}").status_code == 404
    text = client.get("/metrics").text
    assert "no-such-path" not in text and 'factory_requests_total{endpoint="other",status="404"} 3.0' in text
    assert re.search(r'factory_request_latency_seconds_bucket\{endpoint="/v1/classify",le="\+Inf"\} \d', text)


def test_an_api_key_is_checked_on_every_call(root):
    app = create_app(ServeSettings(task="tiny", data_root=root, host="0.0.0.0", api_key="s3cret", reload_seconds=3600))
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 401
        assert client.post("/v1/classify", json={"text": "hi"}, headers={"authorization": "Bearer wrong"}).status_code == 401
        good = client.post("/v1/classify", json={"text": "Where is my parcel?"}, headers={"authorization": "Bearer s3cret"})
        assert good.status_code == 200 and good.json()["label"] in LABELS


@pytest.mark.parametrize(("host", "key", "refused"), [
    ("127.0.0.1", "", False), ("localhost", "", False), ("::1", "", False),
    ("0.0.0.0", "", True), ("192.168.1.10", "", True), ("my-host", "", True), ("0.0.0.0", "k", False)])
def test_binding_beyond_loopback_needs_a_key(host, key, refused):
    if refused:
        with pytest.raises(DataError, match="FACTORY_API_KEY"):
            check_binding(host, key)
    else:
        check_binding(host, key)


def test_serving_a_version_that_was_not_released_is_refused(root):
    with pytest.raises(DataError, match="tiny.v7 was not released"):
        create_app(ServeSettings(task="tiny", data_root=root, version="tiny.v7"))


def test_workers_answer_side_by_side_with_the_answers_one_model_gives_alone(root):
    from concurrent.futures import ThreadPoolExecutor

    app = create_app(ServeSettings(task="tiny", data_root=root, threads=2, workers=2, reload_seconds=3600))
    pool = app.state.slot.current[0]
    first, second = pool.classifiers
    assert first is not second and first.llm.n_threads == second.llm.n_threads == 1  # the cores shared out
    texts = ["Where is my parcel?", "I cannot log in.", "Double charge on my card.", "Reset my password please.",
             "The box never arrived.", "Why was I billed twice?"] * 2
    with ThreadPoolExecutor(4) as clients:
        together = list(clients.map(pool.classify, texts))
    alone = [first.classify(t) for t in texts]
    assert [(r.label, r.probabilities) for r in together] == [(r.label, r.probabilities) for r in alone]
    assert len({r.label for r in alone}) >= 2 and pool.idle.qsize() == 2


def test_a_worker_that_fails_a_request_goes_back_to_the_pool(root):
    from factory.runtime.classifier import GGUFClassifier, PromptTooLong
    from factory.serve.app import ClassifierPool

    gguf = next((root / "versions" / "tiny.v1" / "released_model").glob("*.gguf"))
    task = load_task(root / "tasks" / "tiny")
    pool = ClassifierPool([GGUFClassifier(str(gguf), task, threads=1, n_ctx=96) for _ in range(2)])
    for _ in range(3):  # more failures than workers: none is lost
        with pytest.raises(PromptTooLong, match=r"prompt of \d+ tokens, over the model's context of 256"):
            pool.classify("\U0001d518" * 400)  # 400 characters, over a thousand tokens
    assert pool.idle.qsize() == 2 and pool.classify("Where is my parcel?").label in LABELS


def test_a_text_whose_prompt_is_over_the_context_is_a_413_naming_the_limit(root, tmp_path):
    import yaml

    own = clone_data_root(root, tmp_path / "data")
    spec_path = own / "tasks" / "tiny" / "task.yaml"
    spec_path.write_text(yaml.safe_dump({**yaml.safe_load(spec_path.read_text()), "max_input_chars": 4000}))
    with TestClient(create_app(ServeSettings(task="tiny", data_root=own, reload_seconds=3600))) as served:
        response = served.post("/v1/classify", json={"text": "\U0001d518" * 4000})  # characters fit, tokens do not
        assert response.status_code == 413
        assert "over the model's context of 2048; lower max_input_chars" in response.json()["error"]["message"]
        assert served.post("/v1/classify", json={"text": "Where is my parcel?"}).json()["label"] in LABELS
    assert "\U0001d518" not in "".join(p.read_text() for p in log_files(own / "traffic" / "tiny" / "logs"))
