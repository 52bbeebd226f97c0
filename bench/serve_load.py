"""Question 4: what serving costs: `factory serve` under concurrent load, against llama-cpp-python's own server.

    .venv/bin/python bench/serve_load.py                       # prepares a released support_email model first
    .venv/bin/python bench/serve_load.py --data-root data --task support_email   # a task that has a champion

Both servers run the same released GGUF on loopback. `factory serve` answers on the label path (one forward pass
over the new prompt tokens, the label from the trie); the anchor answers the same prompt through its
OpenAI-compatible chat completion (greedy, `max_tokens` the longest answer's tokens plus the end of turn, so it
never generates more than a right answer needs). Clients send the task's test texts round robin for
`--seconds` at each concurrency. Recorded: p50/p95 latency, requests/s, failed requests, the server's CPU-seconds per
request, and for `factory serve` the request log lines written against the requests answered (ids unique).

Preparing: the shipped task is copied to a data root of its own with its release gates off (this measures serving,
not quality) and run through `factory version new` + `factory run` with the default recipe (a model that answers
with labels, so the anchor's completions are as short as they would be in production).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import requests
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import factory, write_result  # noqa: E402

from factory.lib.files import read_jsonl  # noqa: E402
from factory.lib.task import load_task  # noqa: E402

FAST_RUN = {"ops": {"baseline_report": {"config": {"base_model_rows": 20, "reference_rows": 0}},
                    "eval_report": {"config": {"hf_limit": 0, "free_limit": 20}}}}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def prepare(work: Path, task: str, cache: Path, recipe: str) -> None:
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(Path("data/tasks") / task, work / "tasks" / task)
    spec_path = work / "tasks" / task / "task.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    spec["release_gates"] = {"beat_best_baseline": False, "max_class_recall_drop": 1.0}
    spec["encoder_candidate"] = False  # the fine-tune's GGUF against llama.cpp's server: nothing else may be released
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    config = work / "fast_run.yaml"
    config.write_text(yaml.safe_dump(FAST_RUN))
    env = {"FACTORY_DATA_ROOT": str(work), "DAGSTER_HOME": str(work / "dagster"), "FACTORY_CACHE_ROOT": str(cache)}
    factory("version", "new", "--task", task, env=env)
    factory("run", f"{task}.v1", "--recipe", recipe, "--config", str(config), env=env)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise SystemExit(f"server at {url} did not start") from None
            time.sleep(0.5)


def load(send, texts: list[str], clients: int, seconds: float) -> dict:
    latencies, failures, stop = [], [], threading.Event()
    lock = threading.Lock()

    def client(offset: int) -> None:
        session, i = requests.Session(), offset
        while not stop.is_set():
            started = time.perf_counter()
            try:
                ok = send(session, texts[i % len(texts)])
            except requests.RequestException:
                ok = False
            elapsed = time.perf_counter() - started
            with lock:
                (latencies if ok else failures).append(elapsed)
            i += clients

    workers = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    time.sleep(seconds)
    stop.set()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {"clients": clients, "requests": len(latencies), "failed": len(failures),
            "requests_per_s": round(len(latencies) / wall, 2),
            "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
            "p95_ms": round(float(np.percentile(ms, 95)), 1) if len(ms) else None}


def measure(name: str, command: list[str], health: str, send, texts, levels, seconds, env=None, log_dir=None) -> list[dict]:
    log = open(f"/tmp/serve_load_{name}.log", "w")  # noqa: SIM115 (kept open for the server's lifetime)
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    try:
        wait_until_up(health, process)
        send(requests.Session(), texts[0])  # warm: the shared prompt prefix into the cache
        rows = []
        for clients in levels:
            before_lines = _log_ids(log_dir) if log_dir else []
            cpu_before = cpu_seconds(process.pid)
            row = {"server": name, **load(send, texts, clients, seconds)}
            row["cpu_s_per_request"] = round((cpu_seconds(process.pid) - cpu_before) / max(row["requests"], 1), 3)
            if log_dir:
                ids = _log_ids(log_dir)[len(before_lines):]
                row |= {"log_lines": len(ids), "log_duplicates": len(ids) - len(set(ids))}
            print(json.dumps(row), flush=True)
            rows.append(row)
        return rows
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _log_ids(log_dir: Path) -> list[str]:
    return [json.loads(line)["id"] for p in sorted(log_dir.glob("requests-*.jsonl"))
            for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="support_email")
    parser.add_argument("--data-root", help="a data root where the task has a champion (default: prepare one)")
    parser.add_argument("--work", default="data/bench_serve")
    parser.add_argument("--cache", default="data/cache")
    parser.add_argument("--recipe", default="default", help="the recipe a prepared model trains with")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--concurrency", default="4,8")
    # llama-cpp-python's server would take half the cores by default: both servers get one count.
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="llama.cpp threads for both servers")
    parser.add_argument("--workers", type=int, default=1, help="`factory serve --workers`: model copies sharing the threads")
    parser.add_argument("--name", default="serve_load")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    root = Path(args.data_root or args.work).resolve()
    if not args.data_root:
        prepare(root, args.task, Path(args.cache).resolve(), args.recipe)
    task = load_task(root / "tasks" / args.task)
    texts = [row["text"] for row in read_jsonl(task.path("test"))]
    versions = sorted((root / "versions").glob(f"{args.task}.v*/released_model/release.json"))
    release = json.loads(versions[-1].read_text())
    if release.get("kind", "gguf") != "gguf":
        sys.exit(f"{versions[-1]}: the last release is an encoder classifier; this benchmark compares GGUF servers")
    gguf = versions[-1].parent / release["gguf"]
    levels = [int(n) for n in args.concurrency.split(",")]
    log_dir = root / "traffic" / args.task / "logs"

    port = free_port()
    factory_url = f"http://127.0.0.1:{port}"

    def send_factory(session, text):
        return session.post(f"{factory_url}/v1/classify", json={"text": text}, timeout=120).status_code == 200

    served = measure("factory_serve", [sys.executable, "-m", "factory.cli", "serve", "--task", args.task,
                                       "--port", str(port), "--threads", str(args.threads), "--workers", str(args.workers)],
                     f"{factory_url}/healthz", send_factory, texts, levels, args.seconds,
                     env={"FACTORY_DATA_ROOT": str(root)}, log_dir=log_dir)

    port = free_port()
    anchor_url = f"http://127.0.0.1:{port}/v1"

    from llama_cpp import Llama

    vocab = Llama(model_path=str(gguf), vocab_only=True, verbose=False)
    contract = task.build_contract()
    max_tokens = max(len(vocab.tokenize(contract.render(label).encode(), add_bos=False)) for label in contract.labels) + 1
    completion_tokens = []

    def send_anchor(session, text):
        response = session.post(f"{anchor_url}/chat/completions", timeout=120, json={
            "messages": task.messages(text), "max_tokens": max_tokens, "temperature": 0.0})
        if response.status_code == 200:
            completion_tokens.append(response.json()["usage"]["completion_tokens"])
        return response.status_code == 200

    anchor = measure("llama_cpp_server", [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host",
                                          "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
                                          "--n_threads", str(args.threads), "--n_threads_batch", str(args.threads)],
                     f"{anchor_url}/models", send_anchor, texts, levels, args.seconds)
    by_level = {row["clients"]: row for row in anchor}
    for row in served:
        row["throughput_vs_anchor"] = round(row["requests_per_s"] / by_level[row["clients"]]["requests_per_s"], 2)
    payload = {"task": args.task, "gguf": gguf.name, "seconds": args.seconds, "threads": args.threads, "workers": args.workers,
               "anchor_max_tokens": max_tokens, "anchor_mean_completion_tokens": round(float(np.mean(completion_tokens)), 2), "results": served + anchor}
    write_result(args.name, payload, args.out)
    return payload


if __name__ == "__main__":
    main()
