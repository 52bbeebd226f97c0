import random
import re
import typing

import pytest

from factory.lib.augment import (
    DEVICE_FOOTERS,
    INPUT_STYLES,
    LONG_CONTEXT,
    LONG_OPENERS,
    OPERATIONS,
    SIGN_OFFS,
    add_typos,
    augment,
    change_casing,
    fitting_operations,
)
from factory.lib.task import TaskSpec

SEEDS = [{"id": "s1", "text": "Hello, my parcel has not arrived and the tracking page shows nothing since Monday. "
                            "Could you please check what happened to order NW-123 and tell me when it will come?",
          "target": "shipping", "source": "seed"},
         {"id": "s2", "text": "I was charged twice.", "target": "billing", "source": "seed"}]
SCRUBBED = ("Hi, I am <PERSON> and my address <EMAIL_ADDRESS> stopped receiving the weekly invoices. "
            "Please resend every invoice from March to <EMAIL_ADDRESS> and call me back on <PHONE_NUMBER> tomorrow.")
PLACEHOLDERS = ["<PERSON>", "<EMAIL_ADDRESS>", "<EMAIL_ADDRESS>", "<PHONE_NUMBER>"]


def test_same_seed_same_rows_and_other_seed_other_rows():
    assert augment(SEEDS, 3, seed=1) == augment(SEEDS, 3, seed=1)
    assert augment(SEEDS, 3, seed=1) != augment(SEEDS, 3, seed=2)
    for style in INPUT_STYLES:
        assert augment(SEEDS, 5, seed=7, style=style) == augment(SEEDS, 5, seed=7, style=style)
    assert augment(SEEDS, 5, seed=7, style="chat") != augment(SEEDS, 5, seed=7, style="email")


def test_variants_keep_target_and_record_provenance():
    rows = augment(SEEDS, 2, seed=0)
    assert len(rows) == 4
    for row in rows:
        parent = next(s for s in SEEDS if s["id"] == row["parent_id"])
        assert row["target"] == parent["target"]
        assert row["id"].startswith(parent["id"] + "~aug")
        assert row["source"] == "augment" and row["generator"] == "format_augmenter"
        assert len(row["operations"].split(",")) == 2 and set(row["operations"].split(",")) <= set(fitting_operations("email"))
    assert [r["id"] for r in rows] == ["s1~aug0", "s1~aug1", "s2~aug0", "s2~aug1"]


def test_each_style_allows_exactly_the_declared_operations():
    assert fitting_operations("email") == ["short", "truncate", "typos", "casing", "noise", "quoted_reply", "signature", "header"]
    assert fitting_operations("chat") == ["short", "truncate", "long", "typos", "casing", "noise"]
    assert fitting_operations("document") == ["short", "truncate", "long", "typos", "casing", "noise"]
    for style in INPUT_STYLES:
        used = {op for row in augment(SEEDS, 100, seed=3, style=style) for op in row["operations"].split(",")}
        assert used == set(fitting_operations(style)), style  # every fitting one is used, and nothing else


def test_operations_are_recorded_in_the_order_they_apply():
    order = list(OPERATIONS)
    for row in augment(SEEDS, 50, seed=4, style="email"):
        first, second = row["operations"].split(",")
        assert order.index(first) < order.index(second)


def test_the_task_and_the_augmenter_know_the_same_styles():
    assert typing.get_args(TaskSpec.model_fields["input_style"].annotation) == INPUT_STYLES
    assert TaskSpec.model_fields["input_style"].default == "email"


def test_an_unknown_style_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown input style 'sms'.*email, chat, document"):
        augment(SEEDS, 1, seed=0, style="sms")


def test_chat_variants_carry_no_mail_envelope_while_email_variants_do():
    chat = augment(SEEDS, 100, seed=5, style="chat")
    assert len(chat) == 200
    for row in chat:
        text = row["text"].lower()
        assert "from:" not in text and "subject:" not in text and "wrote:" not in text, row
        assert not any(f"{s.lower()}," in text for s in SIGN_OFFS), row
        assert not any(f.lower() in text for f in DEVICE_FOOTERS), row

    email = augment(SEEDS, 100, seed=5, style="email")
    with_header = [r for r in email if "header" in r["operations"].split(",")]
    with_signature = [r for r in email if "signature" in r["operations"].split(",")]
    with_reply = [r for r in email if "quoted_reply" in r["operations"].split(",")]
    assert with_header and with_signature and with_reply
    assert all(re.match(r"From: .+ <.+@example\.com>\nDate: .+\nSubject: ", r["text"]) for r in with_header)
    assert all(any(f"\n\n{s},\n" in r["text"] for s in SIGN_OFFS) for r in with_signature)
    assert all("Support <support@example.com> wrote:\n> " in r["text"] for r in with_reply)


def test_long_variants_speak_in_their_style():
    for style in ("chat", "document"):
        phrases = LONG_OPENERS[style] + LONG_CONTEXT[style]
        others = [p for other in LONG_OPENERS if other != style for p in LONG_OPENERS[other] + LONG_CONTEXT[other]]
        for k in range(20):
            out = OPERATIONS["long"].apply(SEEDS[0]["text"], random.Random(k), style)
            assert SEEDS[0]["text"] in out and len(out) > len(SEEDS[0]["text"])
            assert any(p in out for p in phrases) and not any(p in out for p in others)


def test_typos_change_a_few_words_and_never_a_placeholder():
    words = SCRUBBED.split()
    for k in range(50):
        out = add_typos(SCRUBBED, random.Random(k), "chat")
        assert out != SCRUBBED
        assert re.findall(r"<[A-Z_]+>", out) == PLACEHOLDERS
        changed = [(a, b) for a, b in zip(words, out.split(), strict=True) if a != b]
        assert 1 <= len(changed) <= 3
        for before, after in changed:
            assert abs(len(before) - len(after)) <= 1 and before[0] == after[0]  # one slip, first letter kept


def test_casing_lowers_or_sentence_cases_the_text_but_not_placeholders():
    seen = set()
    for k in range(20):
        out = change_casing(SCRUBBED, random.Random(k), "document")
        assert re.findall(r"<[A-Z_]+>", out) == PLACEHOLDERS
        assert re.sub(r"<[A-Z_]+>", "", out).lower() == re.sub(r"<[A-Z_]+>", "", SCRUBBED).lower()
        seen.add(out[:3])
    assert seen == {"hi,", "Hi,"}  # all lower, and sentence case


@pytest.mark.parametrize("style", INPUT_STYLES)
def test_placeholders_survive_every_variant(style):
    for row in augment([{"id": "p", "text": SCRUBBED, "target": "billing"}], 60, seed=6, style=style):
        assert "<PERSON>" in row["text"] and "<EMAIL_ADDRESS>" in row["text"], row
        assert "<person>" not in row["text"] and "<email_address>" not in row["text"], row


def test_each_operation_keeps_the_message_body():
    body = SEEDS[0]["text"]
    for name, op in OPERATIONS.items():
        for style in op.styles:
            out = op.apply(body, random.Random(0), style)
            if name in ("truncate", "short"):
                assert body.startswith(out) and len(out.split()) < len(body.split())
            elif name in ("noise", "casing", "typos"):
                assert out != body and out.split() and len(out.split()) == len(body.split())
            else:
                assert body in out and out != body
    assert OPERATIONS["short"].apply(SEEDS[1]["text"], random.Random(0), "chat") == SEEDS[1]["text"]
