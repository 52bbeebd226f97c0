"""bench/pii_recall.py on a small corpus: every kind is scored, the planted values are real, and a scrubber that misses scores 0."""
import json
from pathlib import Path

import phonenumbers
import pytest

from factory.lib import pii

BENCH = Path(__file__).resolve().parents[1] / "bench"
ALL_KINDS = {"EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "API_KEY", "PERSON"}


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import pii_recall

    return pii_recall


def run(bench, tmp_path) -> dict:
    bench.main(["--per-kind", "5", "--negatives", "20", "--out", str(tmp_path)])
    return json.loads((tmp_path / "pii_recall.json").read_text())


def test_every_kind_is_planted_and_scored(bench, tmp_path):
    result = run(bench, tmp_path)
    kinds = result["kinds"]
    assert set(kinds) == ALL_KINDS
    assert all(kinds[k]["planted"] == 5 and len(kinds[k]["formats"]) == 5 for k in ALL_KINDS)  # five formats each
    assert kinds["EMAIL_ADDRESS"]["found"] == 5 and kinds["EMAIL_ADDRESS"]["recall"] == 1.0
    assert kinds["PERSON"]["recall"] == 0.0  # no spaCy model here
    assert result["negatives"] == 20 and sum(result["negative_categories"].values()) == 20
    assert 0 <= result["negatives_flagged"] <= 20
    assert sum(k["false_positives"] for k in kinds.values()) >= result["negatives_flagged"]
    assert result["benchmark"] == "pii_recall" and result["target_recall"] == 0.99


@pytest.mark.parametrize(
    "broken",
    [
        lambda text, **kw: pii.Scrubbed(text, ()),  # finds nothing
        lambda text, **kw: pii.Scrubbed(text, tuple(sorted(ALL_KINDS))),  # names every kind but removes nothing
    ],
    ids=["finds_nothing", "reports_without_removing"],
)
def test_a_broken_scrubber_scores_zero(bench, tmp_path, monkeypatch, broken):
    monkeypatch.setattr(pii, "scrub", broken)
    result = run(bench, tmp_path)
    assert {k: m["recall"] for k, m in result["kinds"].items()} == dict.fromkeys(ALL_KINDS, 0.0)
    assert set(result["pattern_kinds_below_target"]) == ALL_KINDS - {"PERSON"}


def test_a_placeholder_of_another_kind_is_not_a_find(bench, tmp_path, monkeypatch):
    monkeypatch.setattr(pii, "scrub", lambda text, **kw: pii.Scrubbed("<EMAIL_ADDRESS>", ("EMAIL_ADDRESS",)))
    kinds = run(bench, tmp_path)["kinds"]
    assert kinds["EMAIL_ADDRESS"]["recall"] == 1.0 and kinds["EMAIL_ADDRESS"]["exact"] == 0
    assert kinds["PHONE_NUMBER"]["recall"] == kinds["API_KEY"]["recall"] == 0.0
    assert kinds["EMAIL_ADDRESS"]["false_positives"] == 20 and kinds["EMAIL_ADDRESS"]["spurious"] == 30


def test_the_corpus_is_seeded_and_its_numbers_pass_their_checks(bench):
    corpus = bench.corpus(per_kind=40, negatives=30, seed=1)
    assert corpus == bench.corpus(per_kind=40, negatives=30, seed=1) != bench.corpus(per_kind=40, negatives=30, seed=2)

    def luhn(digits: str) -> bool:
        return sum(sum(divmod(int(d) * (1 + i % 2), 10)) for i, d in enumerate(reversed(digits))) % 10 == 0

    for s in corpus:
        compact = s.value.replace(" ", "").replace("-", "")
        assert s.value in s.text or s.kind == "NONE"
        if s.kind == "CREDIT_CARD":
            assert luhn(compact), s
        elif s.kind == "IBAN_CODE":
            assert int("".join(str(int(c, 36)) for c in compact[4:] + compact[:4])) % 97 == 1, s
        elif s.kind == "PHONE_NUMBER":
            region = {"us": "US", "uk": "GB", "de": "DE"}[s.format[:2]]
            assert phonenumbers.is_valid_number(phonenumbers.parse(s.value, region)), s
