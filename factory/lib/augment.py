"""A model-free generator: makes seed inputs look like production traffic, label kept.

Each variant applies two format operations (headers, quoted replies, signatures,
whitespace and casing noise, truncation) chosen by a seeded RNG per (row, variant),
so the same seeds and seed value always produce the same rows.
"""
from __future__ import annotations

import random
import re
from collections.abc import Callable

FIRST_NAMES = ["Alex", "Sam", "Maria", "Jonas", "Priya", "Tom", "Lena", "Kenji", "Fatima", "Luca", "Ines", "Olu"]
LAST_NAMES = ["Meyer", "Okafor", "Silva", "Novak", "Tanaka", "Brennan", "Haddad", "Larsen", "Rossi", "Dubois"]
SIGN_OFFS = ["Thanks", "Best regards", "Cheers", "Kind regards", "Regards", "Thank you", "BR", "Many thanks"]
DEVICE_FOOTERS = ["Sent from my iPhone", "Sent from my Android phone", "Sent from Outlook for iOS", "Get Outlook for Android"]
QUOTED_REPLIES = [
    "Thanks for reaching out. Could you tell us a bit more so we can help?",
    "Hello, we have received your message and will get back to you shortly.",
    "Hi there, thank you for your patience. Is there anything else we can help with?",
    "Your request has been logged. Please reply to this email with any further details.",
]
WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def _person(rng: random.Random) -> tuple[str, str]:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    return f"{first} {last}", f"{first.lower()}.{last.lower()}{rng.randint(1, 99)}@example.com"


def _date(rng: random.Random) -> str:
    return f"{rng.choice(WEEKDAYS)}, {rng.randint(1, 28)} {rng.choice(MONTHS)} 2026 {rng.randint(7, 22):02d}:{rng.randint(0, 59):02d}"


def add_header(text: str, rng: random.Random) -> str:
    name, email = _person(rng)
    first_line = next((ln for ln in text.splitlines() if ln.strip()), text)[:60].strip()
    subject = rng.choice(["", "Re: ", "Fwd: ", "URGENT: "]) + first_line.rstrip(".,!?")
    return f"From: {name} <{email}>\nDate: {_date(rng)}\nSubject: {subject}\n\n{text}"


def add_quoted_reply(text: str, rng: random.Random) -> str:
    quoted = "\n".join("> " + line for line in rng.choice(QUOTED_REPLIES).split(". "))
    return f"{text}\n\nOn {_date(rng)}, Support <support@example.com> wrote:\n{quoted}"


def add_signature(text: str, rng: random.Random) -> str:
    name, _ = _person(rng)
    footer = rng.choice(["", "\n" + rng.choice(DEVICE_FOOTERS), f"\nTel. +1 555 {rng.randint(100, 999)} {rng.randint(1000, 9999)}"])
    return f"{text}\n\n{rng.choice(SIGN_OFFS)},\n{name}{footer}"


def add_noise(text: str, rng: random.Random) -> str:
    style = rng.choice(["lower", "spaces", "no_punct", "newlines"])
    if style == "lower":
        return text.lower()
    if style == "spaces":
        return re.sub(r" ", lambda m: "  " if rng.random() < 0.15 else " ", text)
    if style == "no_punct":
        return re.sub(r"[,;!]", "", text)
    return re.sub(r"\n+", lambda m: "\n" * rng.randint(1, 3), "  " + text + "\n\n")


def truncate(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    if len(words) < 25:
        return text
    keep = max(20, int(len(words) * rng.uniform(0.8, 0.95)))
    return " ".join(words[:keep])


OPERATIONS: dict[str, Callable[[str, random.Random], str]] = {
    "header": add_header,
    "quoted_reply": add_quoted_reply,
    "signature": add_signature,
    "noise": add_noise,
    "truncate": truncate,
}


def augment(rows: list[dict], variants_per_row: int, seed: int) -> list[dict]:
    """Variants of each row with provenance: parent id, operations applied, generator name."""
    out = []
    for row in rows:
        for k in range(variants_per_row):
            rng = random.Random(f"{seed}:{row['id']}:{k}")
            ops = sorted(rng.sample(sorted(OPERATIONS), 2))
            text = row["text"]
            for op in ops:
                text = OPERATIONS[op](text, rng)
            out.append({
                "id": f"{row['id']}~aug{k}",
                "text": text,
                "target": row["target"],
                "source": "augment",
                "parent_id": row["id"],
                "generator": "format_augmenter",
                "operations": ",".join(ops),
            })
    return out
