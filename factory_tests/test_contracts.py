import re

import pytest

from factory.lib.contracts import ClassificationContract, ContractError, ExtractionContract, build_contract

LABELS = ClassificationContract(labels={"billing": "charges", "shipping": "parcels"})
INVOICE = ExtractionContract(json_schema={
    "type": "object", "required": ["total", "currency"], "additionalProperties": False,
    "properties": {"total": {"type": "number"}, "currency": {"type": "string", "enum": ["EUR", "USD"]}},
})


def test_classification_accepts_known_labels_and_names_unknown_ones():
    assert LABELS.canonical(" billing ") == "billing"
    with pytest.raises(ContractError, match="unknown label 'refund'"):
        LABELS.canonical("refund")
    with pytest.raises(ContractError):
        LABELS.canonical("")


@pytest.mark.parametrize("answer,expected", [("billing", "billing"), (" shipping.\n", "shipping"),
                                              ("`billing`", "billing"), ("Billing", None), ("I think billing", None)])
def test_classification_parses_only_exact_labels(answer, expected):
    assert LABELS.parse_answer(answer) == expected


def test_classification_metrics_count_invalid_answers_as_wrong():
    scores = LABELS.metrics(["billing", "shipping", "billing", "shipping"], ["billing", None, "billing", "billing"])
    assert scores["accuracy"] == 0.5
    assert scores["invalid_rate"] == 0.25
    assert scores["macro_f1"] == pytest.approx((0.8 + 0.0) / 2)


def test_extraction_canonicalises_and_validates_against_the_schema():
    assert INVOICE.canonical('{"currency": "EUR", "total": 12.5}') == '{"currency":"EUR","total":12.5}'
    with pytest.raises(ContractError, match="at currency"):
        INVOICE.canonical({"total": 1, "currency": "GBP"})
    with pytest.raises(ContractError, match="not valid JSON"):
        INVOICE.canonical("{total: 1")
    assert INVOICE.parse_answer("not json") is None


def test_extraction_metrics_score_fields():
    gold = [INVOICE.canonical({"total": 1, "currency": "EUR"}), INVOICE.canonical({"total": 2, "currency": "USD"})]
    pred = [INVOICE.canonical({"total": 1, "currency": "EUR"}), INVOICE.canonical({"total": 3, "currency": "USD"})]
    scores = INVOICE.metrics(gold, pred)
    assert scores == {"exact_match": 0.5, "invalid_rate": 0.0, "field_accuracy": 0.75}


def test_build_contract_rejects_unknown_types():
    with pytest.raises(ContractError, match="contract.type"):
        build_contract({"type": "ranking"})


def test_a_verbalizer_renders_words_and_parses_only_them_back_to_the_label():
    worded = ClassificationContract(labels={"card_arrival": "card not here", "top_up": "add money"},
                                    answers={"card_arrival": "card arrival"})
    assert worded.render("card_arrival") == "card arrival" and worded.render("top_up") == "top_up"
    assert worded.parse_answer(" card arrival.\n") == "card_arrival" and worded.parse_answer("top_up") == "top_up"
    assert worded.parse_answer("card_arrival") is None  # the model answers the words; the label name is not an answer
    assert worded.canonical("card_arrival") == "card_arrival"  # targets stay labels


@pytest.mark.parametrize("answers,message", [
    ({"refund": "refund"}, "answers given for unknown labels ['refund']"),
    ({"billing": "shipping"}, "labels 'billing' and 'shipping' have the same answer 'shipping'"),
    ({"billing": " bill "}, "the answer for label 'billing' must be non-empty"),
])
def test_a_verbalizer_that_would_make_answers_ambiguous_is_refused(answers, message):
    with pytest.raises(ContractError, match=re.escape(message)):
        build_contract({"type": "classification", "labels": {"billing": "charges", "shipping": "parcels"}, "answers": answers})
