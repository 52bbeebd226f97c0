"""The request log: whole lines under concurrency, rotation by day and size, a cursor that takes each line once."""
from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import threading

from factory.integrations.request_log import RequestLog, log_files, pending_ranges, read_ranges


def take(directory, cursor):
    ranges, after = pending_ranges(directory, cursor)
    return read_ranges(directory, ranges), after


def test_lines_are_taken_once_and_a_partial_line_waits(tmp_path):
    log = RequestLog(tmp_path)
    log.append({"id": "a"})
    log.append({"id": "b"})
    found, cursor = take(tmp_path, {})
    assert [r["id"] for r in found.records] == ["a", "b"]
    # A writer mid-line: the fragment is not taken until its newline arrives.
    path = log_files(tmp_path)[0]
    with path.open("ab") as handle:
        handle.write(b'{"id": "c"')
    found, cursor = take(tmp_path, cursor)
    assert found.records == [] and found.ranges == {}
    with path.open("ab") as handle:
        handle.write(b"}\n")
    found, cursor = take(tmp_path, cursor)
    assert [r["id"] for r in found.records] == ["c"]
    assert take(tmp_path, cursor)[0].records == []


def test_a_torn_line_from_a_killed_writer_stays_apart(tmp_path):
    log = RequestLog(tmp_path)
    log.append({"id": "a"})
    with log_files(tmp_path)[0].open("ab") as handle:
        handle.write(b'{"id": "torn", "inp')  # the writer died here
    log.append({"id": "b"})
    found, _ = take(tmp_path, {})
    assert [r["id"] for r in found.records] == ["a", "b"]
    assert len(found.malformed) == 1 and found.malformed[0][0] == log_files(tmp_path)[0].name


def test_rotation_by_size_and_day_loses_nothing(tmp_path):
    now = [dt.datetime(2026, 12, 3, 23, 59, tzinfo=dt.UTC)]
    log = RequestLog(tmp_path, max_bytes=200, clock=lambda: now[0])
    cursor, seen = {}, []
    for i in range(30):
        if i == 20:
            now[0] = dt.datetime(2026, 12, 4, 0, 1, tzinfo=dt.UTC)
        log.append({"id": f"r{i:02d}", "input": "x" * 40})
        if i % 7 == 0:  # read while files rotate underneath
            found, cursor = take(tmp_path, cursor)
            seen += [r["id"] for r in found.records]
    found, cursor = take(tmp_path, cursor)
    seen += [r["id"] for r in found.records]
    assert seen == [f"r{i:02d}" for i in range(30)]
    names = [p.name for p in log_files(tmp_path)]
    assert names[0] == "requests-20261203-0001.jsonl" and len(names) > 2
    assert {n[9:17] for n in names} == {"20261203", "20261204"}
    assert all(p.stat().st_size <= 200 for p in log_files(tmp_path))


def test_a_file_that_is_gone_drops_out_of_the_cursor(tmp_path):
    log = RequestLog(tmp_path)
    log.append({"id": "a"})
    _, cursor = take(tmp_path, {})
    gone = log_files(tmp_path)[0]
    gone.unlink()
    assert pending_ranges(tmp_path, cursor) == ({}, {})


def _write_many(directory: str, writer: int, count: int) -> None:
    log = RequestLog(directory, max_bytes=4096)
    for i in range(count):
        log.append({"id": f"{writer}-{i}", "input": "é" * (i % 50)})


def test_concurrent_threads_and_processes_never_interleave(tmp_path):
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_write_many, args=(str(tmp_path), w, 100)) for w in range(3)]
    threads = [threading.Thread(target=_write_many, args=(str(tmp_path), w, 100)) for w in range(3, 6)]
    for worker in processes + threads:
        worker.start()
    for worker in processes + threads:
        worker.join()
    lines = [line for p in log_files(tmp_path) for line in p.read_text(encoding="utf-8").splitlines()]
    ids = [json.loads(line)["id"] for line in lines]  # every line parses: none torn or interleaved
    assert sorted(ids) == sorted(f"{w}-{i}" for w in range(6) for i in range(100))
    assert len(log_files(tmp_path)) > 1
