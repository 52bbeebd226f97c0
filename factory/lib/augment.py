"""A model-free generator: makes seed inputs look like production traffic, label kept.

A task declares its input style (`email`, `chat` or `document`), and each operation declares the styles it fits:
typos, casing, whitespace and punctuation noise, truncation and a very short variant fit every style; a longer
variant (a polite opener or a context sentence) fits chat and documents; mail headers, quoted replies and
signatures fit e-mail only. Each variant applies two of the fitting operations, chosen by a seeded RNG per
(row, variant), in the order of `OPERATIONS` (the writer's text first, the mail client's envelope last), so the same
rows, seed and style always produce the same rows. Placeholders such as <EMAIL_ADDRESS> are never changed.
"""
from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

INPUT_STYLES = ("email", "chat", "document")  # the values of TaskSpec.input_style
OPERATIONS_PER_VARIANT = 2

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
# The longer variant: an opener before the text or a context sentence after it, free of names, numbers and labels.
LONG_OPENERS = {
    "chat": ["Hi!", "Hello, quick question.", "Hey, hope you can help me.", "Hi there, I need some help."],
    "document": ["Please find the text below.", "The following was copied from the original document.", "For your review:"],
}
LONG_CONTEXT = {
    "chat": ["I already looked through the help pages but found nothing.", "Sorry if this is the wrong place to ask.",
             "This is the first time this has happened to me.", "A quick answer would be great."],
    "document": ["This document was prepared for internal use.", "Please keep a copy for your records.", "End of document."],
}
WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
PLACEHOLDER = re.compile(r"(<[A-Z][A-Z0-9_]*>)")  # what PII scrubbing writes; kept as it is
TYPO_WORD = re.compile(r"(?<!\S)[A-Za-z]{4,}(?=[.,!?;:]*(?:\s|$))")  # a whole word of letters, so never a placeholder
SHORT_WORDS = (10, 14)  # a very short variant keeps this many words, or the first sentence


def _person(rng: random.Random) -> tuple[str, str]:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    return f"{first} {last}", f"{first.lower()}.{last.lower()}{rng.randint(1, 99)}@example.com"


def _date(rng: random.Random) -> str:
    return f"{rng.choice(WEEKDAYS)}, {rng.randint(1, 28)} {rng.choice(MONTHS)} 2026 {rng.randint(7, 22):02d}:{rng.randint(0, 59):02d}"


# Every operation is (text, rng, style) -> text; only `lengthen` reads the style.

def add_header(text: str, rng: random.Random, style: str) -> str:
    name, email = _person(rng)
    first_line = next((ln for ln in text.splitlines() if ln.strip()), text)[:60].strip()
    subject = rng.choice(["", "Re: ", "Fwd: ", "URGENT: "]) + first_line.rstrip(".,!?")
    return f"From: {name} <{email}>\nDate: {_date(rng)}\nSubject: {subject}\n\n{text}"


def add_quoted_reply(text: str, rng: random.Random, style: str) -> str:
    quoted = "\n".join("> " + line for line in rng.choice(QUOTED_REPLIES).split(". "))
    return f"{text}\n\nOn {_date(rng)}, Support <support@example.com> wrote:\n{quoted}"


def add_signature(text: str, rng: random.Random, style: str) -> str:
    name, _ = _person(rng)
    footer = rng.choice(["", "\n" + rng.choice(DEVICE_FOOTERS), f"\nTel. +1 555 {rng.randint(100, 999)} {rng.randint(1000, 9999)}"])
    return f"{text}\n\n{rng.choice(SIGN_OFFS)},\n{name}{footer}"


def add_noise(text: str, rng: random.Random, style: str) -> str:
    """Whitespace and punctuation noise: doubled spaces, dropped commas, extra blank lines."""
    kind = rng.choice(["spaces", "no_punct", "newlines"])
    if kind == "spaces":
        return re.sub(r" ", lambda m: "  " if rng.random() < 0.15 else " ", text)
    if kind == "no_punct":
        return re.sub(r"[,;!]", "", text)
    return re.sub(r"\n+", lambda m: "\n" * rng.randint(1, 3), "  " + text + "\n\n")


def change_casing(text: str, rng: random.Random, style: str) -> str:
    """All lower case, or sentence case (lower case, each sentence's first letter upper); placeholders kept."""
    lower = "".join(part if PLACEHOLDER.fullmatch(part) else part.lower() for part in PLACEHOLDER.split(text))
    if rng.random() < 0.5:
        return lower
    return re.sub(r"(^\s*|[.!?]\s+)([a-z])", lambda m: m.group(1) + m.group(2).upper(), lower)


def add_typos(text: str, rng: random.Random, style: str) -> str:
    """Typing slips in one to three words: two adjacent letters swapped, one dropped or one doubled."""
    words = list(TYPO_WORD.finditer(text))
    chosen = sorted(rng.sample(range(len(words)), min(len(words), rng.randint(1, 3))), reverse=True)
    for index in chosen:  # from the end, so earlier spans stay valid
        match = words[index]
        word, i = match.group(), rng.randrange(1, len(match.group()) - 1)  # never the first or last letter
        kind = rng.choice(["swap", "drop", "double"])
        if kind == "swap" and word[i] != word[i + 1]:
            word = word[:i] + word[i + 1] + word[i] + word[i + 2:]
        elif kind == "double":
            word = word[:i + 1] + word[i:]
        else:
            word = word[:i] + word[i + 1:]
        text = text[:match.start()] + word + text[match.end():]
    return text


def shorten(text: str, rng: random.Random, style: str) -> str:
    """A very short variant: the first sentence (6 to 20 words) or the first ~12 words; short texts stay as they are."""
    words = text.split()
    if len(words) <= SHORT_WORDS[1]:
        return text
    first_sentence = re.split(r"(?<=[.!?])\s+", text.strip(), maxsplit=1)[0]
    if 6 <= len(first_sentence.split()) <= 20 and rng.random() < 0.5:
        return first_sentence
    return " ".join(words[:rng.randint(*SHORT_WORDS)])


def lengthen(text: str, rng: random.Random, style: str) -> str:
    """A longer variant: an opener before the text or a context sentence after it, in the style's register."""
    separator = " " if style == "chat" else "\n\n"
    if rng.random() < 0.5:
        return rng.choice(LONG_OPENERS[style]) + separator + text
    return text + separator + rng.choice(LONG_CONTEXT[style])


def truncate(text: str, rng: random.Random, style: str) -> str:
    words = text.split(" ")
    if len(words) < 25:
        return text
    keep = max(20, int(len(words) * rng.uniform(0.8, 0.95)))
    return " ".join(words[:keep])


@dataclass(frozen=True)
class Operation:
    apply: Callable[[str, random.Random, str], str]
    styles: frozenset[str]  # the input styles this operation fits


EVERY_STYLE = frozenset(INPUT_STYLES)
EMAIL_ONLY = frozenset({"email"})
# In the order they apply: the writer's text first, then what a mail client wraps around it.
OPERATIONS: dict[str, Operation] = {
    "short": Operation(shorten, EVERY_STYLE),
    "truncate": Operation(truncate, EVERY_STYLE),
    "long": Operation(lengthen, frozenset({"chat", "document"})),
    "typos": Operation(add_typos, EVERY_STYLE),
    "casing": Operation(change_casing, EVERY_STYLE),
    "noise": Operation(add_noise, EVERY_STYLE),
    "quoted_reply": Operation(add_quoted_reply, EMAIL_ONLY),
    "signature": Operation(add_signature, EMAIL_ONLY),
    "header": Operation(add_header, EMAIL_ONLY),
}


def fitting_operations(style: str) -> list[str]:
    """The operations that fit an input style, in the order they apply."""
    if style not in INPUT_STYLES:
        raise ValueError(f"unknown input style {style!r}; the augmenter knows {', '.join(INPUT_STYLES)} "
                         "(set `input_style` in the task's task.yaml to one of them)")
    return [name for name, op in OPERATIONS.items() if style in op.styles]


def augment(rows: list[dict], variants_per_row: int, seed: int, style: str = "email") -> list[dict]:
    """Variants of each row, made with operations fitting `style`, with provenance: parent id, operations, generator."""
    names = fitting_operations(style)
    out = []
    for row in rows:
        for k in range(variants_per_row):
            rng = random.Random(f"{seed}:{row['id']}:{k}")
            picked = set(rng.sample(names, OPERATIONS_PER_VARIANT))
            ops = [name for name in names if name in picked]
            text = row["text"]
            for op in ops:
                text = OPERATIONS[op].apply(text, rng, style)
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
