import os
import subprocess
import sys

import pytest
import spacy

from factory.lib.pii import Scrubbed, scrub, scrub_rows

JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Write to jane.doe+billing@example.co.uk today", "Write to <EMAIL_ADDRESS> today"),
        ("Call me on +1 415-555-0132.", "Call me on <PHONE_NUMBER>."),
        ("Call me on (415) 555-0132.", "Call me on <PHONE_NUMBER>."),
        ("Call me on +44 20 7946 0958.", "Call me on <PHONE_NUMBER>."),
        ("Call me on 020 7946 0958.", "Call me on <PHONE_NUMBER>."),
        ("Ring +33 1 42 68 53 00 after six", "Ring <PHONE_NUMBER> after six"),
        ("Card 4111 1111 1111 1111 was declined", "Card <CREDIT_CARD> was declined"),
        ("Card 4111-1111-1111-1111 was declined", "Card <CREDIT_CARD> was declined"),
        ("Card 2223 0031 2200 3222 was declined", "Card <CREDIT_CARD> was declined"),  # Mastercard's 2-series
        ("Refund to DE89 3704 0044 0532 0130 00 please", "Refund to <IBAN_CODE> please"),
        ("Refund to GB82WEST12345698765432 please", "Refund to <IBAN_CODE> please"),
        ("Login from 192.168.1.10 failed", "Login from <IP_ADDRESS> failed"),
        ("Login from 2001:db8::ff00:42:8329 failed", "Login from <IP_ADDRESS> failed"),
        ("My key is sk-proj-abcdefghijklmnopqrstuvwxyz123456, oops", "My key is <API_KEY>, oops"),
        ("token ghp_" + "a1B2" * 9 + " leaked", "token <API_KEY> leaked"),
        ("github_pat_11ABCDEFG0123456789_abcdefghijklmnop", "<API_KEY>"),
        ("aws AKIAIOSFODNN7EXAMPLE in the log", "aws <API_KEY> in the log"),
        ("Authorization: Bearer abcdef1234567890ABCDEF", "Authorization: Bearer <API_KEY>"),
        (f"jwt {JWT} expired", "jwt <API_KEY> expired"),
        ("slack xoxb-123456789012-abcdefghijkl here", "slack <API_KEY> here"),
        ("stripe sk_live_" + "a1B2" * 6 + " here", "stripe <API_KEY> here"),
        ("google AIza" + "a1B2c3D4e5" * 3 + "f6G7h here", "google <API_KEY> here"),
        ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "aws_secret_access_key = <API_KEY>"),
        ("The old header was Bearer abcdef1234567890ABCDEF.", "The old header was Bearer <API_KEY>."),
        ("api_key=9f86d081884c7d659a2feaa0c55ad015", "api_key=<API_KEY>"),
        ('config: api_key = "abcd1234efgh5678"', 'config: api_key = "<API_KEY>"'),
        ("token: 3f2a9c1b7d8e4f60 expired", "token: <API_KEY> expired"),
        ("password='hunter22' did not work", "password='<API_KEY>' did not work"),
        ("The old one was api_key=9f86d081884c7d659a2feaa0c55ad015.", "The old one was api_key=<API_KEY>."),
    ],
)
def test_each_kind_is_replaced_by_its_placeholder(text, expected):
    result = scrub(text)
    assert result.text == expected
    kind = expected[expected.index("<") + 1 : expected.index(">")]
    assert result.kinds == (kind,)


@pytest.mark.parametrize(
    "text",
    [
        "order 12345",
        "I was charged twice on 3 March",
        "Delivery was due 2026-12-03",
        "The courier came at 10:30",
        "I paid $1,234.56 for it",
        "Invoice 2026-0042, reference 20261203103000",
        "The bearer of bad news",
        "Bearer responsibilities are listed below",  # a bearer token has a digit in it
        "My password: forgotten, again",
        "Reset token: 1 hour left",  # a secret after "token:" has 8 characters or more
        "akiaiosfodnn7example",  # AWS key ids are upper case
        "pk_live_" + "a1B2" * 6,  # Stripe's publishable keys are public
        "Grüße, José — café",
        "",
    ],
)
def test_plain_text_is_left_untouched(text):
    assert scrub(text) == Scrubbed(text, ())


@pytest.mark.parametrize(
    "valid, invalid, kind",
    [
        ("4111 1111 1111 1111", "4111 1111 1111 1112", "CREDIT_CARD"),  # last digit breaks the Luhn check
        ("2223 0031 2200 3222", "2223 0031 2200 3223", "CREDIT_CARD"),
        ("DE89 3704 0044 0532 0130 00", "DE89 3704 0044 0532 0130 01", "IBAN_CODE"),  # breaks the mod-97 check
    ],
)
def test_a_number_failing_its_checksum_is_left_untouched(valid, invalid, kind):
    assert scrub(f"number {valid} here") == Scrubbed(f"number <{kind}> here", (kind,))
    assert scrub(f"number {invalid} here") == Scrubbed(f"number {invalid} here", ())


def test_a_support_email_with_several_kinds():
    text = (
        "Hi, I'm José from Zürich. I was charged twice on 3 March (order 12345). Reach me at jose@example.com "
        "or +44 20 7946 0958. Refund to DE89 3704 0044 0532 0130 00, not card 4111 1111 1111 1111. Grüße!"
    )
    assert scrub(text) == Scrubbed(
        "Hi, I'm José from Zürich. I was charged twice on 3 March (order 12345). Reach me at <EMAIL_ADDRESS> "
        "or <PHONE_NUMBER>. Refund to <IBAN_CODE>, not card <CREDIT_CARD>. Grüße!",
        ("CREDIT_CARD", "EMAIL_ADDRESS", "IBAN_CODE", "PHONE_NUMBER"),
    )


def test_person_names_need_an_ner_model():
    assert scrub("Ada Lovelace asked for a refund").kinds == ()


def test_a_spacy_model_adds_person_names(tmp_path):
    # The smallest real spaCy pipeline that tags a PERSON, written for the test: no model download.
    nlp = spacy.blank("en")
    nlp.add_pipe("entity_ruler").add_patterns([{"label": "PERSON", "pattern": "Ada Lovelace"}])
    nlp.to_disk(tmp_path / "model")
    result = scrub("Ada Lovelace wrote from ada@example.com", spacy_model=str(tmp_path / "model"))
    assert result == Scrubbed("<PERSON> wrote from <EMAIL_ADDRESS>", ("EMAIL_ADDRESS", "PERSON"))


def test_a_missing_spacy_model_is_an_error_not_a_download(monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("tried to download a spaCy model")

    monkeypatch.setattr(spacy.cli, "download", no_download)
    with pytest.raises(ValueError, match="en_core_web_lg"):
        scrub("hello", spacy_model="en_core_web_lg")


def test_scrubbing_an_email_address_needs_no_network_and_writes_no_cache(tmp_path):
    # Presidio's EmailRecognizer, on its first use in a process, fetches the Public Suffix List and caches it under
    # ~/.cache. A fresh interpreter is the only place where that first use can be observed.
    script = (
        "import socket\n"
        "def no_network(*args, **kwargs):\n"
        "    raise OSError('network call')\n"
        "socket.getaddrinfo = no_network\n"
        "from factory.lib.pii import scrub\n"
        "print(scrub('mail bob@example.org').text)\n"
    )
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "mail <EMAIL_ADDRESS>\n"
    assert "Public Suffix List" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_scrub_rows_returns_every_row_scrubbed_and_reports_those_with_pii():
    rows = [
        {"id": "a", "text": "Where is my parcel?", "target": "shipping"},
        {"id": "b", "text": "Mail me at bob@example.org or call +1 415-555-0132", "target": "shipping"},
        {"id": "c", "text": "Card 4111 1111 1111 1111 was charged twice", "target": "billing"},
    ]
    clean, report = scrub_rows(rows)
    assert clean == [
        {"id": "a", "text": "Where is my parcel?", "target": "shipping", "pii": []},
        {"id": "b", "text": "Mail me at <EMAIL_ADDRESS> or call <PHONE_NUMBER>", "target": "shipping",
         "pii": ["EMAIL_ADDRESS", "PHONE_NUMBER"]},
        {"id": "c", "text": "Card <CREDIT_CARD> was charged twice", "target": "billing", "pii": ["CREDIT_CARD"]},
    ]
    assert report == [{"row": 1, "kinds": ["EMAIL_ADDRESS", "PHONE_NUMBER"]}, {"row": 2, "kinds": ["CREDIT_CARD"]}]
    assert rows[1]["text"] == "Mail me at bob@example.org or call +1 415-555-0132" and "pii" not in rows[1]


def test_scrub_rows_uses_the_named_field():
    clean, report = scrub_rows([{"input": "ip 10.0.0.1", "text": "ip 10.0.0.2"}], field="input")
    assert clean == [{"input": "ip <IP_ADDRESS>", "text": "ip 10.0.0.2", "pii": ["IP_ADDRESS"]}]
    assert report == [{"row": 0, "kinds": ["IP_ADDRESS"]}]


def test_scrub_rows_passes_rows_without_text_through_for_the_schema_gate():
    clean, report = scrub_rows([{"text": "mail a@b.org"}, {"input": "no text field"}, {"text": 42}])
    assert clean == [{"text": "mail <EMAIL_ADDRESS>", "pii": ["EMAIL_ADDRESS"]}, {"input": "no text field", "pii": []},
                     {"text": 42, "pii": []}]
    assert report == [{"row": 0, "kinds": ["EMAIL_ADDRESS"]}]
