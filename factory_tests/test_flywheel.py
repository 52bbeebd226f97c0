"""Tier 5: the production flywheel end to end on loopback with the packaged model: serve, feedback, the log sensor,
review, the production eval set, a new version trained and gated, and the server moving to the new champion."""
from __future__ import annotations

import threading
import time

import dagster as dg
import pytest
import requests
import uvicorn
import yaml

from factory.definitions import defs
from factory.defs.automation import new_version_sensor, production_log_sensor, review_file_sensor
from factory.defs.partitions import dataset_versions
from factory.defs.resources import factory_resources
from factory.lib.files import read_jsonl
from factory.lib.review import read_review, write_review
from factory.pipeline import failed_checks, materialize_version
from factory.serve.app import ServeSettings, create_app
from factory_tests.conftest import clone_data_root, free_port

LABELS = ["billing", "shipping", "login"]
TRAFFIC = ["I was charged two times for the same order.", "My parcel never came.", "I can't get into my account.",
           "Why did my bill go up this month?", "Tracking says delivered but nothing here.", "Reset code never arrives."]


def set_task(root, **changes) -> None:
    path = root / "tasks" / "tiny" / "task.yaml"
    spec = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        spec[key] = {**spec.get(key, {}), **value}
    path.write_text(yaml.safe_dump(spec))


@pytest.mark.slow
def test_served_traffic_becomes_a_gated_new_champion(released_version, tmp_path, model_cache):
    assert released_version["exit_code"] == 0, released_version["stdout"]
    root = clone_data_root(released_version["root"], tmp_path / "data")
    # 14 steps on 16 more rows is no better model: gates a second version can pass (a failing gate's refusal is
    # test_release's).
    set_task(root, production={"production_eval_size": 2, "retrain_after": 3},
             release_gates={"min_test_macro_f1": 0.0, "max_class_recall_drop": 1.0})
    resources = factory_resources(str(root), str(model_cache))
    storage, tracker = resources["storage"], resources["tracker"]
    assert tracker.champion("tiny")["dagster.partition"] == "tiny.v1"

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(ServeSettings(task="tiny", data_root=root, reload_seconds=0.5)),
                                           host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        # 1. Requests served by tiny.v1; one answer corrected through feedback.
        answers = [requests.post(f"{url}/v1/classify", json={"text": t}, timeout=30).json() for t in TRAFFIC]
        assert {a["model_version"] for a in answers} == {"tiny.v1"}
        corrected = answers[0]
        wrong = next(label for label in LABELS if label != corrected["label"])
        assert requests.post(f"{url}/v1/feedback", json={"request_id": corrected["request_id"], "label": wrong},
                             timeout=30).status_code == 200

        with dg.instance_for_test() as instance:
            instance.add_dynamic_partitions("dataset_version", ["tiny.v1"])
            # 2. The sensor takes the new log lines once; the review queue follows.
            tick = dg.build_sensor_context(instance=instance, resources={"storage": storage})
            intake = production_log_sensor(tick)
            assert len(intake.run_requests) == 1
            instance.add_dynamic_partitions("served_task", ["tiny"])
            loaded = defs()
            traffic = [loaded.get_assets_def(name) for name in ("production_logs", "review_queue", "reviewed_examples")]
            assert dg.materialize(traffic[:2], partition_key="tiny", instance=instance, resources=resources,
                                  run_config=intake.run_requests[0].run_config).success
            again = production_log_sensor(dg.build_sensor_context(instance=instance, cursor=intake.cursor,
                                                                   resources={"storage": storage}))
            assert again.run_requests == []
            logged = read_jsonl(root / "traffic" / "tiny" / "production_logs.jsonl")
            assert sorted(r["type"] for r in logged) == ["feedback"] + ["request"] * len(TRAFFIC)

            # 3. A person reviews every row in the file: the corrected one keeps the feedback label.
            review_path = root / "traffic" / "tiny" / "review.csv"
            rows = read_review(review_path)
            by_id = {r["request_id"]: r for r in rows}
            assert "corrected" in by_id[corrected["request_id"]]["reasons"].split()
            assert by_id[corrected["request_id"]]["correct_label"] == wrong
            known = {r["request_id"] for r in rows}
            rows += [{"request_id": a["request_id"], "text": text, "model_label": a["label"], "time": str(i),
                      "correct_label": a["label"], "reasons": "", "confidence": "", "model_version": "tiny.v1",
                      "feedback_label": "", "near_duplicate_of": ""}
                     for i, (a, text) in enumerate(zip(answers, TRAFFIC)) if a["request_id"] not in known]
            for row in rows:  # the person agrees with the model wherever no correction came in
                row["correct_label"], row["reviewed"] = row["correct_label"] or row["model_label"], "yes"
            write_review(review_path, rows)
            review = review_file_sensor(dg.build_sensor_context(instance=instance, resources={"storage": storage}))
            assert [r.partition_key for r in review.run_requests] == ["tiny"]
            assert dg.materialize(traffic[2:], partition_key="tiny", instance=instance, resources=resources).success

            # 4. The production eval set fills first; only the rows beyond it become seeds.
            production_eval = read_jsonl(root / "tasks" / "tiny" / "production" / "eval.jsonl")
            production_seeds = read_jsonl(root / "tasks" / "tiny" / "production" / "seeds.jsonl")
            assert len(production_eval) == 2 and len(production_seeds) == len(TRAFFIC) - 2
            assert not {r["text"] for r in production_eval} & {r["text"] for r in production_seeds}

            # 5. Enough reviewed seeds: the sensor adds tiny.v2 and automation starts its roots.
            cursor = dg.evaluate_automation_conditions(defs=loaded, instance=instance).cursor
            added = new_version_sensor(dg.build_sensor_context(instance=instance, resources={"storage": storage}))
            assert added.dynamic_partitions_requests[0].partition_keys == ["tiny.v2"]
            instance.add_dynamic_partitions("dataset_version", ["tiny.v2"])
            automation = dg.evaluate_automation_conditions(defs=loaded, instance=instance, cursor=cursor)
            assert automation.get_requested_partitions(dg.AssetKey("seed_examples")) == {"tiny.v2"}

            # 6. tiny.v2 trains (with tiny.v1's recipe) up to its report and passes its gates; the champion stays until
            # the release.
            before_release = tuple(a.key.to_user_string() for a in loaded.assets
                                   if a.partitions_def == dataset_versions and a.key != dg.AssetKey("released_model"))
            smaller = {"ops": {"gguf_model": {"config": {"quantizations": ["q8_0"]}},
                               "baseline_report": {"config": {"base_model_rows": 1}}}}
            result = materialize_version("tiny.v2", instance, resources=resources, run_config=smaller,
                                         assets=before_release)
            assert result.success and failed_checks(result) == []
            assert tracker.champion("tiny")["dagster.partition"] == "tiny.v1"
            seeds = read_jsonl(storage.asset_dir("tiny.v2", "seed_examples") / "seeds.jsonl")
            assert sum(r["source"] == "production" for r in seeds) == len(TRAFFIC) - 2
            assert (storage.asset_dir("tiny.v2", "eval_sets") / "production.jsonl").exists()
            assert requests.get(f"{url}/healthz", timeout=30).json()["model_version"] == "tiny.v1"

            # 7. tiny.v2 is released; the server swaps while requests keep coming.
            seen, failures, stop = set(), [], threading.Event()

            def traffic_during_swap():
                while not stop.is_set():
                    response = requests.post(f"{url}/v1/classify", json={"text": "Where is my parcel?"}, timeout=30)
                    if response.status_code != 200:
                        failures.append(response.status_code)
                    else:
                        seen.add(response.json()["model_version"])

            clients = [threading.Thread(target=traffic_during_swap) for _ in range(2)]
            for client in clients:
                client.start()
            result = materialize_version("tiny.v2", instance, resources=resources, assets=("released_model",))
            assert result.success and tracker.champion("tiny")["dagster.partition"] == "tiny.v2"
            deadline = time.monotonic() + 60
            while "tiny.v2" not in seen and time.monotonic() < deadline:
                time.sleep(0.2)
            stop.set()
            for client in clients:
                client.join()
            assert failures == [] and seen == {"tiny.v1", "tiny.v2"}
            assert requests.get(f"{url}/healthz", timeout=30).json()["model_version"] == "tiny.v2"
    finally:
        server.should_exit = True
