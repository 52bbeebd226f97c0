"""bench/gates_scale.py on 600 Banking77 rows: every phase is timed, planted exact copies and leaks are all caught, and
gates turned off (thresholds above 1) catch none of the near and paraphrase copies."""
import json
from pathlib import Path

import pytest

from factory.lib.near_dups import jaccard, normalize, shingles

BENCH = Path(__file__).resolve().parents[1] / "bench"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "banking77"  # the default of --data
SMALL = ["--rows", "600", "--eval-rows", "300", "--no-count-tokens"]
KINDS = {"exact_duplicate", "near_duplicate", "paraphrase_duplicate", "exact_leak", "near_leak", "paraphrase_leak"}

pytestmark = pytest.mark.skipif(not (DATA / "train.jsonl").exists(), reason=f"Banking77 is not at {DATA}")


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import gates_scale

    return gates_scale


def test_every_phase_is_measured_and_planted_copies_are_caught(bench, tmp_path, monkeypatch):
    bench.main([*SMALL, "--out", str(tmp_path)])
    result = json.loads((tmp_path / "gates_scale_600.json").read_text())
    assert result["benchmark"] == "gates_scale_600" and result["rows"] == 600 and result["eval_rows"] == 300
    assert set(result["phases"]) == {"pii_scrub", "encode", "gates", "mislabels"}
    for phase in result["phases"].values():
        assert phase["seconds"] > 0 and phase["rows_per_s"] > 0 and phase["peak_rss_mib"] > 0
    assert result["phases"]["encode"]["rows"] == 900 and result["phases"]["gates"]["rows"] == 600
    assert result["ratios"]["gates_vs_encoding"] == pytest.approx(
        (result["phases"]["gates"]["seconds"] + result["phases"]["mislabels"]["seconds"]) / result["phases"]["encode"]["seconds"],
        abs=0.01)
    assert result["accepted"] + sum(result["rejected_by_gate"].values()) == 600

    planted = result["planted"]
    assert set(planted) == KINDS
    assert {k: m["planted"] for k, m in planted.items()} == {k: 12 if k.endswith("duplicate") else 6 for k in KINDS}
    assert planted["exact_duplicate"]["recall"] == planted["exact_leak"]["recall"] == 1.0
    assert planted["exact_leak"]["by"] == {"eval_leakage (same text)": 6}
    assert planted["exact_duplicate"]["by"]["exact_duplicate"] >= 10  # the rest: the original was a semantic duplicate
    assert planted["paraphrase_duplicate"]["recall_reachable"] in (None, 1.0)  # cosine >= 0.97 to a row: it goes
    assert result["false_positives"]["clean_rows"] == 600 - 54 - 36  # planted rows and the originals of duplicates

    mislabels = result["mislabels"]
    assert mislabels["flipped"] == 12 and mislabels["flagged"] >= mislabels["flagged_flipped"]
    assert {"precision", "recall", "recall_of_all_flipped", "suggested_the_true_label"} <= set(mislabels)
    assert 0 <= mislabels["precision"] <= 1 and 0 <= mislabels["recall"] <= 1

    monkeypatch.syspath_prepend(str(BENCH))
    import tables

    rendered = tables.gates_scale(result)
    assert "| exact_leak | 6 | 6 | 1.000 | 6 | 1.000 |" in rendered and "| mislabels | " in rendered


def test_gates_turned_off_miss_the_near_and_paraphrase_copies(bench, tmp_path):
    result = bench.main([*SMALL, "--near-threshold", "1.01", "--semantic-threshold", "1.01", "--reworded-threshold", "1.01", "--name", "off",
                         "--out", str(tmp_path)])
    recall = {kind: m["recall"] for kind, m in result["planted"].items()}
    assert recall == {"exact_duplicate": 1.0, "exact_leak": 1.0, "near_duplicate": 0.0, "paraphrase_duplicate": 0.0,
                      "near_leak": 0.0, "paraphrase_leak": 0.0}
    assert result["meets"]["recall"]["near_leak"] is False
    assert (tmp_path / "off.json").exists()


def test_rows_are_seeded_and_planted_as_described(bench):
    def build(seed):
        return bench.build(DATA, 1500, seed, 200, 600, 0.8)  # 600 real rows: the rest of the clean rows are synthetic

    candidates, eval_texts, labels, plants, flips, origin = build(0)
    again = build(0)
    assert again[0] == candidates and again[3] == plants and again[4] == flips
    assert build(1)[0] != candidates
    assert len(candidates) == 1500 and len({r["id"] for r in candidates}) == 1500 and len(labels) == 77
    assert all(r["source"] == "import" and "parent_id" not in r for r in candidates)
    assert sum(o == "synthetic" for o in origin.values()) == 1500 - 600 - len(plants)
    text = {r["id"]: r["text"] for r in candidates}
    for plant in plants:
        original = text[plant["original"]] if "original" in plant else eval_texts[plant["eval_index"]]
        copy, score = text[plant["id"]], jaccard(shingles(text[plant["id"]]), shingles(original))
        kind = plant["kind"].split("_")[0]
        if kind == "exact":
            assert normalize(copy) == normalize(original) and copy != original
        elif kind == "near":
            assert normalize(copy) != normalize(original) and score >= 0.8
        else:
            assert score < 0.8
    target = {r["id"]: r["target"] for r in candidates}
    assert len(flips) == 30 and all(target[i] != true for i, true in flips.items())
