"""The teacher: plans, prompts and tolerant parsing (pure); the HTTP client's retries against a real loopback server
that misbehaves on purpose; both backends for real (llama.cpp's server and the packaged GGUF in process); the cache."""
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from factory.integrations.llm_client import EndpointError, post_chat
from factory.integrations.storage import FactoryStorage
from factory.integrations.teacher import Sampling, Teacher
from factory.lib.gates import text_problem
from factory.lib.task import load_task
from factory.lib.teacher import (
    PlanItem,
    build_plan,
    difficulty_schedule,
    generated_rows,
    parse_generated,
    render_requests,
    rows_schema,
)

LABELS = ["billing", "login", "shipping"]


@pytest.mark.parametrize("raw, texts, repairs", [
    ('{"examples": ["a b", "c d"]}', ["a b", "c d"], []),
    ('```json\n["a b", {"text": "c d"}]\n```', ["a b", "c d"], ["removed code fence"]),
    ('Sure! Here they are:\n["a b", "c d",]\nHope this helps.', ["a b", "c d"], ["ignored prose around the JSON"]),
    ('<think>they want two</think>{"examples": ["a b"]}', ["a b"], ["removed reasoning"]),
    ('{"text": "a b"}\n{"text": "c d"}', ["a b"], ["ignored prose around the JSON"]),
    ('1. a b\n2) c d\n- e f', ["a b", "c d", "e f"], ["read a numbered list"]),
    ('{"examples": ["line one\nline two"]}', ["line one\nline two"], []),
    ('{"examples": ["<example>a b</example>", "c d</example>", "e <example> f"]}', ["a b", "c d", "e <example> f"],
     ["removed the prompt's <example> tags"]),
])
def test_parsing_takes_what_teachers_really_emit_and_records_the_repairs(raw, texts, repairs):
    parsed = parse_generated(raw)
    assert parsed.error is None
    assert parsed.texts == texts
    assert parsed.repairs == repairs


@pytest.mark.parametrize("raw", ["", "I cannot help with that.", '{"examples": []}', '{"examples": [1, 2]}',
                                 '{"examples": ["<example></example>"]}'])
def test_unparseable_replies_become_one_rejectable_row_with_the_error(raw):
    parsed = parse_generated(raw)
    assert parsed.error and not parsed.texts
    request = render_requests([PlanItem("billing", "canonical", 1, "quota")], _task(), [], 5, 0, seed=0)[0]
    [row] = generated_rows(request, parsed, "k" * 64, {"teacher_backend": "http"})
    assert row["text"] == "" and row["parse_error"] == parsed.error and row["raw_output_id"] == "k" * 64


def test_the_plan_splits_the_quota_by_kind_and_adds_shortfalls_and_repair_clusters():
    mix = {"canonical": 0.5, "boundary": 0.25, "near_miss": 0.25, "negative": 0.25}
    plan = build_plan(LABELS, 8, mix, {"billing": "shipping"}, shortfalls={"login": 3},
                      repair_targets={"clusters": [{"target": "billing", "predicted": "login", "suggested_rows": 20},
                                                   {"target": "gone", "predicted": "login", "suggested_rows": 20}]},
                      fallback_label="shipping")
    quota = [(i.label, i.kind, i.rows) for i in plan if i.reason == "quota"]
    assert quota[:3] == [("billing", "canonical", 4), ("billing", "boundary", 2), ("billing", "near_miss", 2)]
    assert ("shipping", "negative", 2) in quota and len(quota) == 10
    assert [(i.label, i.kind, i.rows) for i in plan if i.reason == "shortfall"] == [("login", "canonical", 3)]
    assert [(i.label, i.neighbour, i.rows) for i in plan if i.reason == "repair"] == [("billing", "login", 20)]
    assert next(i for i in plan if i.label == "billing").neighbour == "shipping"
    assert not [i for i in build_plan(LABELS, 8, mix, {}) if i.kind == "negative"]  # no fallback, no negatives


def _task(tmp_path=None):
    import tempfile
    from pathlib import Path

    from factory_tests.conftest import make_tiny_task

    folder = make_tiny_task(Path(tmp_path or tempfile.mkdtemp()))
    return load_task(folder)


def test_requests_are_batched_seeded_and_name_their_template(tmp_path):
    task = _task(tmp_path)
    seeds = [{"id": f"s{i}", "text": f"seed text {i}", "target": "billing"} for i in range(6)]
    plan = [PlanItem("billing", "boundary", 7, "quota", "shipping")]
    first = render_requests(plan, task, seeds, rows_per_request=3, few_shot=2, seed=0)
    assert [r.item.rows for r in first] == [7] * 3 and len(first) == 3
    assert all("write 3 new" in r.messages[0]["content"] for r in first)  # 9 rows for 7: one schema fits every reply
    assert "close to 'shipping'" in first[0].messages[0]["content"]
    assert all(len(r.parent_ids) == 2 and set(r.parent_ids) <= {s["id"] for s in seeds} for r in first)
    again = render_requests(plan, task, list(reversed(seeds)), rows_per_request=3, few_shot=2, seed=0)
    assert [r.messages for r in again] == [r.messages for r in first]
    assert len({r.key for r in first}) == 3  # each request its own cache entry
    assert first[0].template == "classification" and len(first[0].template_sha256) == 64


def test_requests_take_difficulties_in_the_tasks_shares_and_repairs_are_hard(tmp_path):
    schedule = difficulty_schedule({"easy": 0.25, "medium": 0.5, "hard": 0.25})
    first = [next(schedule) for _ in range(8)]
    assert sorted(first[:4]) == ["easy", "hard", "medium", "medium"]  # interleaved, not all easy first
    assert first[4:] == first[:4]
    assert {next(difficulty_schedule({"easy": 0.0, "hard": 1.0})) for _ in range(3)} == {"hard"}
    plan = [PlanItem("billing", "canonical", 8, "quota"), PlanItem("login", "near_miss", 4, "repair", "billing")]
    requests = render_requests(plan, _task(tmp_path), [], 2, 0, seed=0, difficulty={"easy": 0.5, "hard": 0.5})
    assert [r.difficulty for r in requests] == ["easy", "hard", "easy", "hard", "hard", "hard"]
    assert all(f"Difficulty {r.difficulty}: " in r.messages[0]["content"] for r in requests)
    assert "only through a detail" in requests[1].messages[0]["content"]
    [row] = generated_rows(requests[1], parse_generated('{"examples": ["a b"]}'), "k" * 64, {})
    assert row["difficulty"] == "hard" and row["kind"] == "canonical" and row["plan_reason"] == "quota"


def test_requests_share_the_task_and_its_labels_as_one_prefix_the_teacher_caches(tmp_path):
    """llama.cpp reuses the longest prefix it already processed: on Banking77's 77 labels that list is ~1,000 tokens
    a request, so nothing that changes per request may come before it."""
    plan = [PlanItem("billing", "canonical", 4, "quota"), PlanItem("login", "near_miss", 2, "quota", "billing")]
    contents = [r.messages[0]["content"] for r in render_requests(plan, _task(tmp_path), [], 2, 0, seed=0)]
    shared = os.path.commonprefix(contents)
    assert len(set(contents)) == 3 and all(f"- {label}: " in shared for label in LABELS)


class _Scripted(BaseHTTPRequestHandler):
    """A chat endpoint that answers from a script: a status, 'slow' (sleeps past the client's timeout) or 'garbage'."""

    script: list = []
    calls: list = []
    content = '{"examples": ["ok text"]}'

    def do_POST(self):  # noqa: N802 (the http.server API)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).calls.append(body)
        step = type(self).script.pop(0) if type(self).script else 200
        if step == "slow":
            time.sleep(1.5)
            step = 200
        if step == "garbage":
            self._send(200, b"<html>proxy error</html>", "text/html")
        elif step == 200:
            reply = {"choices": [{"message": {"role": "assistant", "content": type(self).content}}],
                     "usage": {"prompt_tokens": 11, "completion_tokens": 5}}
            self._send(200, json.dumps(reply).encode(), "application/json")
        else:
            self._send(step, b'{"error": "scripted"}', "application/json", {"Retry-After": "0"} if step == 429 else {})

    def _send(self, status, payload, kind, headers=None):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def scripted_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Scripted.calls, _Scripted.script, _Scripted.content = [], [], '{"examples": ["ok text"]}'
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", _Scripted
    server.shutdown()


def test_500_429_timeouts_and_non_json_replies_are_retried_then_succeed(scripted_server):
    url, handler = scripted_server
    handler.script = [500, 429, "slow", "garbage", 200]
    waits = []
    payload, attempts = post_chat(url, {"messages": []}, "", timeout_s=1.0, retries=5, sleep=waits.append)
    assert attempts == 5 and len(handler.calls) == 5 and len(waits) == 4
    assert waits[1] == 0.0  # 429's Retry-After: 0 honoured
    assert payload["usage"]["prompt_tokens"] == 11


def test_a_4xx_is_not_retried_and_exhausted_retries_name_the_last_problem(scripted_server):
    url, handler = scripted_server
    handler.script = [400]
    with pytest.raises(EndpointError, match="HTTP 400") as failure:
        post_chat(url, {"messages": []}, "", timeout_s=1.0, retries=4, sleep=lambda s: None)
    assert failure.value.attempts == 1 and len(handler.calls) == 1
    handler.script = [503, 503, 503]
    with pytest.raises(EndpointError, match="HTTP 503; gave up after 3 tries"):
        post_chat(url, {"messages": []}, "", timeout_s=1.0, retries=3, sleep=lambda s: None)


def test_failed_requests_are_counted_not_raised_and_finished_ones_are_cached(scripted_server, tmp_path):
    url, handler = scripted_server
    teacher = Teacher(storage=FactoryStorage(data_root=str(tmp_path)), backend="http", base_url=url, model="m",
                      retries=2, backoff_s=0.001, max_concurrency=1)
    handler.script = [200, 500, 500, 200]
    prompts = [[{"role": "user", "content": f"prompt {i}"}] for i in range(3)]
    done = []
    first = teacher.complete(prompts, Sampling(), on_done=lambda i, c: done.append(i))
    assert [c.error is None for c in first] == [True, False, True] and "gave up after 2 tries" in first[1].error
    assert sorted(done) == [0, 1, 2] and first[0].prompt_tokens == 11
    assert teacher.cost(first) == 0.0
    # A re-run asks only for what failed: two replies come from the cache, one request goes out.
    handler.calls.clear()
    handler.script = [200]
    second = teacher.complete(prompts, Sampling())
    assert [c.cached for c in second] == [True, False, True] and all(c.error is None for c in second)
    assert len(handler.calls) == 1 and handler.calls[0]["messages"] == prompts[1]
    assert second[0].created_at == first[0].created_at
    # Sampling settings are part of the key: another temperature is another request.
    handler.calls.clear()
    teacher.complete(prompts[:1], Sampling(temperature=0.1))
    assert len(handler.calls) == 1 and handler.calls[0]["temperature"] == 0.1


def test_an_unreachable_teacher_fails_every_request_without_raising(tmp_path):
    teacher = Teacher(storage=FactoryStorage(data_root=str(tmp_path)), backend="http", base_url="http://127.0.0.1:9/v1",
                      retries=2, backoff_s=0.001, timeout_s=1)
    results = teacher.complete([[{"role": "user", "content": "x"}]] * 2, Sampling())
    assert all(r.error and "cannot connect" in r.error and r.attempts == 2 for r in results)
    assert not (tmp_path / "teacher_cache").exists()


def test_http_backend_against_llama_cpp_server_writes_schema_shaped_rows(llama_server, tmp_path):
    teacher = Teacher(storage=FactoryStorage(data_root=str(tmp_path)), backend="http", base_url=llama_server["base_url"],
                      model=llama_server["model"], price_per_1k_input_tokens=1.0, price_per_1k_output_tokens=2.0)
    task = _task(tmp_path / "t")
    requests = render_requests([PlanItem("billing", "canonical", 2, "quota")], task,
                               [{"id": "s1", "text": "I was charged twice for one order", "target": "billing"}], 2, 1, 0)
    [completion] = teacher.complete([r.messages for r in requests], Sampling(max_tokens=300, json_schema=rows_schema(2, 300)))
    assert completion.error is None and completion.completion_tokens > 0 and completion.prompt_tokens > 100
    parsed = parse_generated(completion.text)
    assert parsed.error is None and len(parsed.texts) == 2  # the grammar holds even a 135M model to valid JSON, 2 rows
    assert teacher.cost([completion]) == pytest.approx((completion.prompt_tokens + 2 * completion.completion_tokens) / 1000)
    assert teacher.describe() == {"teacher_backend": "http", "teacher_model": "smollm2", "teacher_url": llama_server["base_url"]}


def test_local_backend_runs_the_packaged_gguf_in_process(tmp_path):
    teacher = Teacher(storage=FactoryStorage(data_root=str(tmp_path)), backend="local", n_ctx=1024)
    prompts = [[{"role": "user", "content": 'Write one short customer e-mail about a late parcel. JSON: {"examples": ["..."]}'}]]
    [completion] = teacher.complete(prompts, Sampling(max_tokens=300, json_schema=rows_schema(1, 300)))
    assert completion.error is None and completion.completion_tokens > 0
    assert completion.text.startswith('{"examples"') and parse_generated(completion.text).error is None
    assert teacher.describe()["teacher_model"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    [again] = teacher.complete(prompts, Sampling(max_tokens=300, json_schema=rows_schema(1, 300)))
    assert again.cached and again.text == completion.text


def test_no_teacher_configured_is_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match="FACTORY_TEACHER_BACKEND"):
        Teacher(storage=FactoryStorage(data_root=str(tmp_path))).complete([[]], Sampling())


def test_bad_rows_from_a_teacher_are_rejected_with_reasons_and_crash_no_gate(scripted_server, resources, data_root, instance,
                                                                            capsys):
    import dagster as dg

    from factory.defs.dataset.accepted_examples import accepted_examples, accepted_examples_hold
    from factory.defs.dataset.eval_sets import eval_sets
    from factory.defs.dataset.generated_examples import generated_examples
    from factory.defs.dataset.judged_examples import judged_examples
    from factory.defs.dataset.seed_examples import seed_examples
    from factory.lib.files import read_jsonl

    url, handler = scripted_server
    # JSON escapes carry what a teacher's bytes may hold: NUL, a lone surrogate (invalid UTF-8), 1 MB, wrong types.
    handler.content = json.dumps({"examples": ["a NUL \u0000 inside this text", "broken \ud800 bytes here", "x" * 1_000_000,
                                              42, None, "   ", "A fine, ordinary question about my invoice"]})
    resources["teacher"] = Teacher(storage=resources["storage"], backend="http", base_url=url, model="m", backoff_s=0.001)
    config = {"ops": {"generated_examples": {"config": {"rows_per_label": 1}},
                      "judged_examples": {"config": {"use_judge": False}}}}
    result = dg.materialize([eval_sets, seed_examples, generated_examples, judged_examples, accepted_examples,
                             accepted_examples_hold], partition_key="tiny.v1", resources=resources, instance=instance,
                            run_config=config)
    assert result.success
    version = data_root / "versions" / "tiny.v1"
    generated = read_jsonl(version / "generated_examples" / "generated.jsonl")
    assert all("skipped an item that is not a text: '42'" in r["parse_repairs"] for r in generated)
    # The progress bar's last word counts what the schema gate will take: not the NUL, the lone surrogate or blank rows.
    readable = sum(text_problem(r) is None for r in generated)
    assert 0 < readable < len(generated)
    assert f"rows={len(generated)}, accepted={readable}, tokens=" in capsys.readouterr().err.rsplit("3/3", 1)[-1]
    accepted = read_jsonl(version / "accepted_examples" / "accepted.jsonl")
    rejected = read_jsonl(version / "accepted_examples" / "rejected.jsonl")
    seeds = read_jsonl(version / "seed_examples" / "seeds.jsonl")
    assert len(accepted) + len(rejected) == len(seeds) + len(generated)
    reasons = {r["text"][:12]: (r["gate"], r["reason"]) for r in rejected if r["source"] == "teacher"}
    assert reasons["a NUL \x00 insi"] == ("schema", "text contains a NUL byte")
    assert reasons["broken \ud800 byt"][1].startswith("text is not valid Unicode")
    assert reasons["x" * 12] == ("length", "1000000 characters, outside [8, 4000]")
    # The same reply came for all three labels: the fine text is a label conflict, rejected under each.
    assert reasons["A fine, ordi"] == ("label_conflict", "the same text carries targets ['billing', 'login', 'shipping']")
    assert not [r for r in accepted if r["source"] == "teacher"]


def test_a_retrain_asks_the_teacher_for_last_versions_shortfalls_and_failure_clusters(scripted_server, resources, data_root,
                                                                                        instance):
    import dagster as dg

    from factory.defs.dataset.generated_examples import generated_examples
    from factory.defs.dataset.seed_examples import seed_examples
    from factory.lib.files import write_json

    url, handler = scripted_server
    previous = data_root / "versions" / "tiny.v1"
    write_json(previous / "accepted_examples" / "summary.json", {"label_shortfalls": {"login": 3}})
    write_json(previous / "eval_report" / "repair_targets.json", {"clusters": [
        {"target": "billing", "predicted": "shipping", "suggested_rows": 4, "rows": 2, "examples": []}]})
    resources["teacher"] = Teacher(storage=resources["storage"], backend="http", base_url=url, model="m", max_concurrency=1)
    instance.add_dynamic_partitions("dataset_version", ["tiny.v1", "tiny.v2"])
    result = dg.materialize([seed_examples, generated_examples], partition_key="tiny.v2", resources=resources,
                            instance=instance, run_config={"ops": {"generated_examples": {"config": {"rows_per_label": 0}}}})
    assert result.success
    plan = json.loads((data_root / "versions" / "tiny.v2" / "generated_examples" / "plan.json").read_text())["items"]
    assert [(i["label"], i["kind"], i["rows"], i["reason"], i["neighbour"]) for i in plan] == [
        ("login", "canonical", 3, "shortfall", plan[0]["neighbour"]), ("billing", "near_miss", 4, "repair", "shipping")]
    # rows_per_request is 5: one request per item, the repair one naming the label it must not be mistaken for
    assert len(handler.calls) == 2
    assert 'whose correct category is "login"' in handler.calls[0]["messages"][0]["content"]
    assert "Do not write anything that belongs to \"shipping\"" in handler.calls[1]["messages"][0]["content"]
    examples = handler.calls[1]["response_format"]["schema"]["properties"]["examples"]
    assert examples["minItems"] == examples["maxItems"] == 5 and examples["items"]["maxLength"] == 400  # tiny's max_input_chars, under 600
    # Asked not to learn from the previous version, the same plan is empty: no request at all.
    handler.calls.clear()
    alone = {"ops": {"generated_examples": {"config": {"rows_per_label": 0, "from_previous_version": False}}}}
    assert dg.materialize([seed_examples, generated_examples], partition_key="tiny.v2", resources=resources,
                          instance=instance, run_config=alone).success
    assert json.loads((data_root / "versions" / "tiny.v2" / "generated_examples" / "plan.json").read_text()) == {"items": []}
    assert handler.calls == []
