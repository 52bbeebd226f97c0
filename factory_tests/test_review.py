"""From traffic to data: review candidates and their reasons, edits kept, review errors by line, splits per row."""
from __future__ import annotations

import pytest

from factory.lib.errors import DataError
from factory.lib.review import (
    assign_splits,
    merge_review,
    read_review,
    review_candidates,
    reviewed_rows,
    second_opinion,
    unjudged_records,
    write_review,
)


def request(rid, output, confidence=0.9, abstained=False, text=None, time="2026-12-03T10:00:00"):
    return {"type": "request", "id": rid, "output": output, "confidence": confidence, "abstained": abstained,
            "input": text or f"text of {rid}", "time": time, "model_version": "tiny.v1"}


def test_candidates_carry_every_reason_and_only_those():
    records = [request("ok", "billing"), request("fixed", "billing"), request("unsure", "login", confidence=0.3),
               request("out", "login", abstained=True), request("odd", "shipping"), request("confirmed", "login"),
               {"type": "feedback", "id": "f1", "request_id": "fixed", "label": "shipping"},
               {"type": "feedback", "id": "f2", "request_id": "confirmed", "label": "login"}]
    rows = review_candidates(records, review_below=0.6, baseline={"odd": "billing", "ok": "billing"})
    assert {r["request_id"]: r["reasons"] for r in rows} == {
        "fixed": "corrected", "unsure": "low_confidence", "out": "abstained", "odd": "baseline_disagrees"}
    fixed = next(r for r in rows if r["request_id"] == "fixed")
    assert fixed["feedback_label"] == fixed["correct_label"] == "shipping" and fixed["reviewed"] == ""


def test_merge_keeps_a_persons_edits_and_adds_late_feedback():
    existing = [{**review_candidates([request("a", "billing", 0.1)], 0.6)[0], "correct_label": "login", "reviewed": "yes"},
                review_candidates([request("b", "billing", 0.1)], 0.6)[0]]
    late = [request("a", "billing", 0.1), request("b", "billing", 0.1), request("c", "login", 0.2),
            {"type": "feedback", "id": "f", "request_id": "a", "label": "shipping"},
            {"type": "feedback", "id": "g", "request_id": "b", "label": "shipping"}]
    merged = merge_review(existing, review_candidates(late, 0.6))
    assert [r["request_id"] for r in merged] == ["a", "b", "c"]
    assert merged[0]["correct_label"] == "login" and merged[0]["feedback_label"] == ""  # reviewed: left alone
    assert merged[1]["correct_label"] == "shipping" and merged[1]["reasons"] == "corrected low_confidence"


def test_review_file_problems_name_the_line_and_field(tmp_path):
    path = tmp_path / "review.csv"
    rows = review_candidates([request(f"r{i}", "billing", 0.1, text=f"Text, with a comma\nand a newline {i}")
                              for i in range(4)], 0.6)
    rows[0] |= {"correct_label": "shipping", "reviewed": "yes"}
    rows[1] |= {"correct_label": "shiping", "reviewed": "yes"}
    rows[2] |= {"reviewed": "maybe"}
    write_review(path, rows)
    with pytest.raises(DataError) as error:
        reviewed_rows(read_review(path), {"billing", "shipping", "login"}, path)
    message = str(error.value)
    assert "line 3, field 'correct_label'" in message and "'shiping'" in message
    assert "line 4, field 'reviewed'" in message and "'maybe'" in message
    rows[1]["correct_label"], rows[2]["reviewed"] = "login", "skip"
    write_review(path, rows)
    accepted = reviewed_rows(read_review(path), {"billing", "shipping", "login"}, path)
    assert [(r["request_id"], r["correct_label"]) for r in accepted] == [("r0", "shipping"), ("r1", "login")]
    assert accepted[0]["text"] == "Text, with a comma\nand a newline 0"  # quoted newline survives the round trip


def test_a_review_file_without_its_columns_is_refused(tmp_path):
    path = tmp_path / "review.csv"
    path.write_text("request_id,text\nx,hello\n", encoding="utf-8")
    with pytest.raises(DataError, match="lost its columns"):
        read_review(path)


def reviewed(rid, text=None, near=""):
    return {"request_id": rid, "text": text or f"text {rid}", "correct_label": "billing", "model_label": "login",
            "model_version": "tiny.v1", "time": f"2026-12-03T10:00:{rid[-2:]}", "near_duplicate_of": near}


def test_eval_set_fills_first_then_training_and_splits_stick():
    first = assign_splits([reviewed(f"r{i:02d}") for i in range(5)], {}, eval_size=3)
    assert [r["split"] for r in first] == ["eval", "eval", "eval", "train", "train"]
    previous = {r["request_id"]: r["split"] for r in first}
    # The eval set grows later: rows already placed stay put; new rows fill the gap first.
    later = assign_splits([reviewed(f"r{i:02d}") for i in range(8)], previous, eval_size=5)
    assert {r["request_id"]: r["split"] for r in later} == {
        **previous, "r05": "eval", "r06": "eval", "r07": "train"}
    assert all(r["id"] == f"prod-{r['request_id']}" and r["label"] == "billing" for r in later)


def test_no_text_lands_in_both_splits_and_near_duplicates_train():
    rows = [reviewed("r01", "Where is my parcel?"), reviewed("r02", "  where is my parcel?"),
            reviewed("r03", near="s-shipping-0"), reviewed("r04")]
    out = {r["request_id"]: r["split"] for r in assign_splits(rows, {}, eval_size=10)}
    assert out == {"r01": "eval", "r02": "eval", "r03": "train", "r04": "eval"}


def test_a_review_pass_takes_rows_past_the_last_one_and_earlier_requests_new_feedback_corrects():
    table = [{"type": "request", "id": "a"}, {"type": "request", "id": "b"}, {"type": "feedback", "request_id": "a", "label": "x"}]
    assert unjudged_records(table, 0) == table
    assert unjudged_records(table, 3) == []
    later = table + [{"type": "request", "id": "c"}, {"type": "feedback", "request_id": "b", "label": "y"}]
    assert [r.get("id") or r["request_id"] for r in unjudged_records(later, 3)] == ["b", "c", "b"]
    assert unjudged_records(table, 7) == table  # a rebuilt, shorter table: judged again from the start


@pytest.mark.parametrize("report, expected", [
    ({"best_baseline": "tfidf_logreg", "release": {"kind": "gguf"}}, "tfidf_logreg"),
    ({"best_baseline": "base_few_shot"}, "minilm_logreg"),  # not a classical baseline the review pass can refit
    ({"best_baseline": "minilm_logreg", "release": {"kind": "encoder"}}, "tfidf_logreg"),  # the champion itself
])
def test_the_second_opinion_is_never_the_champion_itself(report, expected):
    assert second_opinion(report) == expected
