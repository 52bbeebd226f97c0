"""PII scrubbing with Microsoft Presidio: each finding in a text is replaced by a placeholder such as <EMAIL_ADDRESS>.

Detected kinds, each by a recognizer that needs no language model:
EMAIL_ADDRESS, PHONE_NUMBER (python-phonenumbers, US and GB national formats, any "+country" format),
CREDIT_CARD (Luhn-checked), IBAN_CODE (checksum-checked), IP_ADDRESS (v4 and v6), and API_KEY (the patterns below).

Person names are not detected by default. Presidio finds names only through a spaCy NER model, and spaCy's models
are not on PyPI, so none can be installed where only PyPI is reachable. A deployment that has a model installed
(e.g. `pip install` of the en_core_web_lg wheel) passes `spacy_model="en_core_web_lg"` (a package name or a path)
and PERSON is added. A missing model is an error: nothing here ever downloads one.

Engines are built once per process and model, on first use, so importing this module stays cheap
(importing presidio_analyzer also imports transformers when it is installed: 3 to 4 s).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

# phonenumbers gives a valid match 0.4 and nothing raises it without a lemmatising NLP engine, so the threshold
# sits there. False positives are kept out by the short recognizer list and its validators, not by the threshold.
SCORE_THRESHOLD = 0.4
# National formats (no "+") are parsed as these regions; each region is one more pass over the text.
PHONE_REGIONS = ("US", "GB")
KINDS = ("API_KEY", "CREDIT_CARD", "EMAIL_ADDRESS", "IBAN_CODE", "IP_ADDRESS", "PHONE_NUMBER")
# Presidio's card pattern with Mastercard's 2-series (2221-2720, issued since 2017) added, which its own lacks.
# A match still counts only once it passes the Luhn check.
CARD_PATTERN = (r"\b(?!1\d{12}(?!\d))((4\d{3})|(5[0-5]\d{2})|(222[1-9]|22[3-9]\d|2[3-6]\d{2}|27[01]\d|2720)|(6\d{3})|(1\d{3})"
                r"|(3\d{3}))[- ]?(\d{3,4})[- ]?(\d{3,4})[- ]?(\d{3,5})\b")

# Presidio matches with the `regex` module and IGNORECASE, so `(?-i:...)` keeps the fixed prefixes case-sensitive.
# "aws_secret_access_key" is spelled out: inside it "secret" has no word boundary before it.
_SECRET_WORDS = (r"api[_-]?key|apikey|secret|client[_-]?secret|(?:aws[_-]?)?secret[_-]?access[_-]?key|access[_-]?token"
                 r"|auth[_-]?token|token|password|passwd|pwd")
API_KEY_PATTERNS = {
    "openai": r"\b(?-i:sk-(?:proj-|svcacct-|admin-|ant-)?[A-Za-z0-9_-]{20,})",
    "github": r"\b(?-i:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})",
    "aws_access_key_id": r"\b(?-i:(?:AKIA|ASIA)[0-9A-Z]{16})\b",
    "slack": r"\b(?-i:xox[baprs]-[A-Za-z0-9-]{10,})",
    "stripe": r"\b(?-i:[sr]k_(?:live|test)_[A-Za-z0-9]{16,})",  # secret and restricted keys; publishable pk_ ones are public
    "google": r"\b(?-i:AIza[A-Za-z0-9_-]{35})(?![A-Za-z0-9_-])",
    "jwt": r"\b(?-i:eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*)",
    # Only the token goes: "Bearer <API_KEY>". A digit is required so "Bearer responsibilities" stays; a token does not
    # end in "." (nor does the value below), so a full stop after it stays.
    "bearer": r"(?<=\b(?-i:Bearer)\s+)(?=[A-Za-z0-9._~+/-]*\d)[A-Za-z0-9._~+/-]{15,}[A-Za-z0-9_~+/-]=*",
    # "api_key=...", "token: ...", "password='...'": the value only, at least 8 characters with a digit in them,
    # so "password: forgotten" stays.
    "assigned_secret": rf"(?<=\b(?:{_SECRET_WORDS})[\"']?\s*[:=]\s*[\"']?)(?=[^\s\"',;]*\d)[^\s\"',;]{{7,}}[^\s\"',;.]",
}


@dataclass(frozen=True)
class Scrubbed:
    text: str  # each finding replaced by <KIND>
    kinds: tuple[str, ...]  # the distinct kinds found, sorted


def scrub(text: str, *, spacy_model: str | None = None) -> Scrubbed:
    """Replace every finding in `text` by a placeholder named after its kind."""
    analyzer, anonymizer, entities = _engines(spacy_model)
    findings = analyzer.analyze(text, language="en", entities=entities, score_threshold=SCORE_THRESHOLD)
    if not findings:
        return Scrubbed(text, ())
    result = anonymizer.anonymize(text, findings)  # the default operator writes "<ENTITY_TYPE>"
    return Scrubbed(result.text, tuple(sorted({item.entity_type for item in result.items})))


def scrub_rows(rows: list[dict], field: str = "text", *, spacy_model: str | None = None) -> tuple[list[dict], list[dict]]:
    """Scrub `field` of every row: the gate for imported and generated rows.

    Returns (rows, report). Every input row comes back, in order, as a new dict with `field` scrubbed and
    "pii" set to the sorted kinds found (an empty list when none); a row whose `field` is not text comes back as it
    is, for the schema gate to reject. The report has one {"row": index, "kinds": [...]} per row that had PII. The
    input rows are not modified.
    """
    scrubbed, report = [], []
    for index, row in enumerate(rows):
        value = row.get(field)
        if not isinstance(value, str):
            scrubbed.append({**row, "pii": []})
            continue
        result = scrub(value, spacy_model=spacy_model)
        scrubbed.append({**row, field: result.text, "pii": list(result.kinds)})
        if result.kinds:
            report.append({"row": index, "kinds": list(result.kinds)})
    return scrubbed, report


@functools.cache
def _engines(spacy_model: str | None):
    """The analyzer, the anonymizer and the kinds to ask for; built once per process and model."""
    import tldextract
    from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NoOpNlpEngine, SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
        SpacyRecognizer,
    )
    from presidio_anonymizer import AnonymizerEngine

    # EmailRecognizer checks the domain with tldextract's default extractor, which fetches the Public Suffix List
    # from the internet on first use and caches it under ~/.cache. The bundled snapshot needs neither.
    offline_tlds = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return offline_tlds(pattern_text).fqdn != ""

    recognizers = [
        OfflineEmailRecognizer(),
        PhoneRecognizer(supported_regions=PHONE_REGIONS),
        CreditCardRecognizer(patterns=[Pattern("card number", CARD_PATTERN, 0.3)]),
        IbanRecognizer(),
        IpRecognizer(),
        PatternRecognizer(
            supported_entity="API_KEY",
            name="ApiKeyRecognizer",
            patterns=[Pattern(name, regex, 0.9) for name, regex in API_KEY_PATTERNS.items()],
        ),
    ]
    entities = list(KINDS)
    if spacy_model is None:
        nlp_engine = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}])
    else:
        import spacy

        # SpacyNlpEngine.load() downloads a missing model; this check comes first so it never does.
        if not (spacy.util.is_package(spacy_model) or Path(spacy_model).exists()):
            raise ValueError(
                f"spaCy model {spacy_model!r} is neither an installed package nor a path; install its wheel "
                "or pass spacy_model=None to scrub without person names"
            )
        nlp_engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": spacy_model}])
        recognizers.append(SpacyRecognizer(supported_entities=["PERSON"]))
        entities.append("PERSON")

    analyzer = AnalyzerEngine(registry=RecognizerRegistry(recognizers=recognizers), nlp_engine=nlp_engine)
    return analyzer, AnonymizerEngine(), entities
