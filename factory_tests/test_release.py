"""Release gates block, the champion is what `factory classify` answers with, and the HTML report renders.

Built on the session's `released_version`; tests that change anything copy it first."""
import json
import os
import shutil
import subprocess

import pytest
import yaml

from factory.cli import main
from factory.lib.files import read_jsonl
from factory.lib.report import failed_gates


@pytest.fixture
def user_env(released_version, monkeypatch):
    for key, value in released_version["env"].items():
        monkeypatch.setenv(key, value)
    return released_version


@pytest.fixture
def version_copy(released_version, tmp_path, monkeypatch, model_cache):
    """The released version copied under a fresh data root (no MLflow, no Dagster history), its task.yaml changed."""
    def make(**task_changes):
        root = tmp_path / "data"
        shutil.copytree(released_version["root"] / "tasks", root / "tasks")
        shutil.copytree(released_version["version"], root / "versions" / "tiny.v1",
                        ignore=shutil.ignore_patterns("eval_report", "released_model"))
        spec_path = root / "tasks" / "tiny" / "task.yaml"
        spec_path.write_text(yaml.safe_dump({**yaml.safe_load(spec_path.read_text()), **task_changes}))
        for key, value in {"FACTORY_DATA_ROOT": str(root), "DAGSTER_HOME": str(root / "dagster"),
                           "FACTORY_CACHE_ROOT": str(model_cache)}.items():
            monkeypatch.setenv(key, value)
        from factory.cli import instance

        instance().add_dynamic_partitions("dataset_version", ["tiny.v1"])
        return root
    return make


@pytest.fixture
def strict_copy(version_copy):
    """A task that demands a test macro-F1 no model can reach."""
    return version_copy(release_gates={"min_test_macro_f1": 1.01, "beat_best_baseline": True})


def test_a_failed_gate_blocks_the_release_and_the_command_exits_3(strict_copy, capsys):
    import dagster as dg
    from mlflow.tracking import MlflowClient

    from factory.cli import instance, run_version
    from factory.pipeline import materialize_version

    assert run_version("tiny.v1", None, assets=("eval_report", "released_model")) == 3
    err = capsys.readouterr()
    assert "not released; failed checks: eval_report:release_gates_pass" in err.err
    report = json.loads((strict_copy / "versions" / "tiny.v1" / "eval_report" / "report.json").read_text())
    failed = failed_gates(report["release_gates"])
    assert f"Release gates: FAILED: {', '.join(failed)}\n" in err.out
    assert "Champion:    unchanged: the failed gates kept tiny.v1 from release" in err.out
    exported = strict_copy / "versions" / "tiny.v1" / "gguf_model" / "Modelfile"
    assert f"Modelfile:   the fine-tune's, not released: {exported}" in err.out and exported.read_text().startswith("FROM ./model-")
    assert any(gate.startswith("min_test_macro_f1 (") and gate.endswith(" vs 1.01)") for gate in failed)
    assert not report["release_gates"]["min_test_macro_f1"]["passed"]
    assert report["release_gates"]["beat_best_baseline"]["baseline"] == report["best_baseline"]
    assert report["candidate_gates"] is None and report["release"]["model"] is None  # no encoder_candidate: none scored
    # Asked for on its own (as automation may, test_traffic), the release re-reads its version's gates and refuses.
    with pytest.raises(dg.Failure, match=r"tiny.v1: release gates failed: .*min_test_macro_f1 \(\S+ vs 1.01\)"):
        materialize_version("tiny.v1", instance(), assets=("released_model",))
    assert not (strict_copy / "versions" / "tiny.v1" / "released_model").exists()
    assert instance().get_latest_materialization_event(dg.AssetKey("released_model")) is None
    assert instance().get_latest_materialization_event(dg.AssetKey("eval_report")) is not None
    client = MlflowClient(tracking_uri=f"sqlite:///{strict_copy / 'mlflow' / 'mlflow.db'}")
    assert client.search_registered_models() == []


def test_a_fine_tune_over_its_latency_budget_gives_way_to_the_encoder_candidate_that_is_served(version_copy, capsys):
    from fastapi.testclient import TestClient
    from mlflow.tracking import MlflowClient

    from factory.cli import run_version
    from factory.lib.report import CANDIDATE
    from factory.lib.task import load_task
    from factory.runtime.encoder import EncoderClassifier
    from factory.serve.app import ServeSettings, create_app

    # The GGUF answers in ~50 ms, MiniLM + LR in ~10: a 25 ms p95 budget only the encoder meets.
    root = version_copy(release_gates={"max_latency_p95_ms": 25.0, "beat_best_baseline": True}, encoder_candidate=True)
    assert run_version("tiny.v1", None, assets=("eval_report", "released_model")) == 0
    out = capsys.readouterr().out
    version = root / "versions" / "tiny.v1"
    report = json.loads((version / "eval_report" / "report.json").read_text())
    assert failed_gates(report["release_gates"]) and all(g.startswith("max_latency_p95_ms") for g in failed_gates(report["release_gates"]))
    assert failed_gates(report["candidate_gates"]) == [] and report["release"]["kind"] == "encoder"
    rival = report["candidate_gates"]["beat_best_baseline"]
    assert rival["value"] == report["models"][CANDIDATE]["test"]["macro_f1"] and rival["baseline"] != "minilm_logreg"
    assert rival["threshold"] >= report["models"][report["served_model"]]["test"]["macro_f1"]  # it beat the fine-tune too
    assert f"Released: **{CANDIDATE}** (the fine-tune failed max_latency_p95_ms" in out and "Modelfile:   none for the champion" in out
    assert f"the fine-tune's, not released: {version / 'gguf_model' / 'Modelfile'}" in out
    release = json.loads((version / "released_model" / "release.json").read_text())
    assert release["kind"] == "encoder" and "gguf" not in release and not (version / "released_model" / "Modelfile").exists()
    card = (version / "released_model" / "MODEL_CARD.md").read_text()
    assert "**Not a generative model**" in card and "The fine-tune it replaced: smollm2-135m, lora, recipe " in card
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    champion = client.get_model_version_by_alias("factory.tiny", "champion")
    assert champion.tags["kind"] == "encoder" and champion.tags["model_path"] == str(version / "released_model" / "encoder")
    assert "gguf_path" not in champion.tags
    # Released, it answers every test row as the report scored it, and `factory serve` serves it.
    encoder = EncoderClassifier(champion.tags["model_path"], load_task(root / "tasks" / "tiny"))
    scored = read_jsonl(version / "eval_report" / CANDIDATE / "predictions-test.jsonl")
    texts = {r["id"]: r["text"] for r in read_jsonl(version / "eval_sets" / "test.jsonl")}
    assert [encoder.classify(texts[p["id"]]).label for p in scored] == [p["prediction"] for p in scored]
    with TestClient(create_app(ServeSettings(task="tiny", data_root=root, reload_seconds=3600))) as served:
        body = served.post("/v1/classify", json={"text": texts[scored[0]["id"]]}).json()
    assert body["label"] == scored[0]["prediction"] and body["model_version"] == "tiny.v1" and 0 < body["confidence"] <= 1


def test_a_version_exported_without_a_modelfile_is_not_released(released_version, tmp_path, model_cache):
    import dagster as dg

    from factory.definitions import defs
    from factory.defs.resources import factory_resources

    root = tmp_path / "data"  # a version exported before the Modelfile was made at export: no GGUF needed to refuse it
    shutil.copytree(released_version["root"] / "tasks", root / "tasks")
    shutil.copytree(released_version["version"], root / "versions" / "tiny.v1",
                    ignore=shutil.ignore_patterns("released_model", "*.gguf", "Modelfile"))
    released = [a for a in defs().assets if dg.AssetKey("released_model") in a.keys]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("dataset_version", ["tiny.v1"])
        result = dg.materialize(released, partition_key="tiny.v1", instance=instance, raise_on_error=False,
                                resources=factory_resources(str(root), str(model_cache)))
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error
    assert not result.success and "gguf_model/Modelfile is missing (exported by an older factory): materialise " \
        "gguf_model again" in (failure.cause or failure).message
    assert not (root / "versions" / "tiny.v1" / "released_model").exists()


def test_classify_answers_with_the_champion_one_text_or_a_file(user_env, tmp_path, capsys):
    assert main(["classify", "--task", "tiny", "I cannot log in, the password reset mail never came."]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["label"] in {"billing", "shipping", "login"} and answer["model_version"] == "tiny.v1"
    assert 0 < answer["confidence"] <= 1 and answer["abstained"] is False
    source = tmp_path / "inbox.csv"
    source.write_text('id,body\na1,"Where is my parcel?"\na2,"Charged twice, ""why""?"\n', encoding="utf-8-sig")
    out = tmp_path / "labels.jsonl"
    assert main(["classify", "--task", "tiny", "--version", "tiny.v1", "--text-field", "body", str(source),
                 "--output", str(out)]) == 0
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == ["a1", "a2"] and all(r["label"] in {"billing", "shipping", "login"} for r in rows)


@pytest.mark.parametrize("args, message", [
    (["classify", "--task", "tiny", "--version", "tiny.v9", "x"], "tiny.v9 was not released"),
    (["classify", "--task", "tiny", "--version", "other.v1", "x"], "'other.v1' is not a version of task 'tiny'"),
    (["classify", "--task", "../tiny", "x"], "bad task name '../tiny'"),
])
def test_classify_refuses_what_was_never_released(user_env, capsys, args, message):
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_classify_writes_an_error_row_for_a_prompt_over_the_context_and_goes_on(user_env, tmp_path, monkeypatch, capsys):
    from factory_tests.conftest import clone_data_root

    own = clone_data_root(user_env["root"], tmp_path / "data")
    spec_path = own / "tasks" / "tiny" / "task.yaml"
    spec_path.write_text(yaml.safe_dump({**yaml.safe_load(spec_path.read_text()), "max_input_chars": 4000}))
    monkeypatch.setenv("FACTORY_DATA_ROOT", str(own))
    source, out = tmp_path / "inbox.jsonl", tmp_path / "labels.jsonl"
    texts = {"a1": "Where is my parcel?", "a2": "\U0001d518" * 4000, "a3": "I cannot log in."}  # a2: 4,000 characters, too many tokens
    source.write_text("".join(json.dumps({"id": k, "text": v}) + "\n" for k, v in texts.items()), encoding="utf-8")
    assert main(["classify", "--task", "tiny", "--version", "tiny.v1", str(source), "--output", str(out)]) == 1
    rows = {r["id"]: r for r in read_jsonl(out)}
    assert list(rows) == ["a1", "a2", "a3"] and "label" not in rows["a2"]
    assert "over the model's context of 2048" in rows["a2"]["error"]
    assert rows["a1"]["label"] in {"billing", "shipping", "login"} and rows["a3"]["label"] in {"billing", "shipping", "login"}
    assert "1 of 3 rows not classified, their prompts over the model's context (ids a2)" in capsys.readouterr().err


def test_classify_names_the_file_line_and_field_of_a_bad_input(user_env, tmp_path, capsys):
    source = tmp_path / "inbox.csv"
    source.write_text("id,text\na1,hello there\na2,\n")
    assert main(["classify", "--task", "tiny", str(source)]) == 2
    assert "inbox.csv, line 3, field 'text': missing or empty text" in capsys.readouterr().err


def test_the_html_report_is_self_contained_and_renders_in_chromium(released_version, tmp_path):
    from PIL import Image, ImageStat

    page = released_version["version"] / "eval_report" / "report.html"
    html = page.read_text()
    assert "http://" not in html and "https://" not in html  # nothing fetched from the network
    assert html.count("<table>") >= 4 and "data:image/png;base64," in html
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed (make install installs it)"
    shot = tmp_path / "report.png"
    subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    "--window-size=1200,1600", "--virtual-time-budget=5000", page.as_uri()],
                   check=True, capture_output=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)})
    image = Image.open(shot).convert("L")
    assert image.size == (1200, 1600)
    assert ImageStat.Stat(image).stddev[0] > 10  # text, tables and the plot, not a blank page
