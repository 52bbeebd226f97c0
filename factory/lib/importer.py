"""Create a task from a labelled CSV or JSONL file: contract from its labels, eval sets frozen first."""
from __future__ import annotations

import csv
import io
import json
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from scipy.optimize import linear_sum_assignment

from factory.lib.contracts import ContractError, build_contract
from factory.lib.errors import DataError
from factory.lib.files import atomic_dir, sha256_rows, write_jsonl
from factory.lib.versions import check_task_name

MAX_LABELS_IN_PROMPT = 30
# Words that should not lead an answer. Written out because sklearn's stop list holds words labels rely on
# (top, bill, call, system).
FUNCTION_WORDS = frozenset("a an and are as at be by for from in into is it my no not of on or our the to up via was with "
                           "your".split())


@dataclass(frozen=True)
class ImportOptions:
    text_field: str = "text"
    label_field: str = "label"
    id_field: str | None = None  # ids are made from line numbers when absent
    split_field: str | None = None  # e.g. an original train/test column; its test rows become the test set
    test_value: str = "test"
    test_per_label: int = 10  # used only without a split field
    dev_per_label: int = 5
    golden_per_label: int = 3
    seed: int = 0
    answer_words: bool = False  # the model answers `card arrival` for the label `card_arrival`
    # Each answer starts with a word no other answer starts with (`arrival card`), so the classify path decides the
    # label from the prompt's forward pass alone instead of one more pass per shared first word. Implies answer_words.
    distinct_first_words: bool = False
    max_chars: int = 20_000  # longer texts are rejected: no task input is a book, and a 1 MB row would dominate a batch


def _read_rows(path: Path) -> list[tuple[int, dict | None, str | None]]:
    """(line, row, problem) for every record; a record that cannot be read is kept with its problem, never raised,
    so one bad line rejects one row. Only a file that is no table at all is refused."""
    if not path.is_file():
        raise DataError(path, "file not found")
    data = path.read_bytes()
    if not data.strip():
        raise DataError(path, "empty file: no rows to import")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        # surrogateescape keeps undecodable bytes visible per row instead of failing the whole file
        reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig", errors="surrogateescape"), newline=""))
        if not reader.fieldnames:
            raise DataError(path, "no header row", line=1)
        records = []
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return records
            except csv.Error as exc:
                records.append((reader.line_num, None, f"malformed CSV: {exc}"))
                continue
            problem = ("more fields than the header (a stray delimiter?)" if None in row else
                       "fewer fields than the header" if any(v is None for v in row.values()) else None)
            records.append((reader.line_num, {k: v for k, v in row.items() if k is not None}, problem))
    if suffix in {".jsonl", ".ndjson"}:
        records = []
        for number, raw in enumerate(data.split(b"\n"), start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                records.append((number, None, f"invalid UTF-8 at byte {exc.start + 1}"))
                continue
            except json.JSONDecodeError as exc:
                records.append((number, None, f"malformed JSON ({exc.msg} at column {exc.colno})"))
                continue
            records.append((number, row, None) if isinstance(row, dict) else
                           (number, None, f"expected a JSON object, got {type(row).__name__}"))
        return records
    raise DataError(path, "unsupported file type; give a .csv or .jsonl file")


def _text_problem(value, max_chars: int) -> str | None:
    if not isinstance(value, str):
        return f"must be a string, got {type(value).__name__}"
    if not value.strip():
        return "empty"
    if "\x00" in value:
        return "contains a NUL byte"
    if any("\udc80" <= ch <= "\udcff" for ch in value):
        return "invalid UTF-8"
    if len(value) > max_chars:
        return f"{len(value):,} characters, over the limit of {max_chars:,}"
    return None


def _validated(path: Path, options: ImportOptions, id_prefix: str = "r",
               forced_split: str = "") -> tuple[list[dict], list[dict]]:
    """(rows, rejected): every record is one or the other; each rejection names its line, field and reason."""
    records = _read_rows(path)
    present = {key for _, raw, _ in records if raw for key in raw}
    for field in (options.text_field, options.label_field, options.id_field, options.split_field):
        if field and field not in present:  # a wrong column name, not a bad row: refuse the file
            raise DataError(path, f"missing column; columns present: {sorted(present)}", field=field)
    rows, rejected, seen = [], [], {}

    def reject(line: int, field: str | None, reason: str, raw) -> None:
        rejected.append({"file": path.name, "line": line, "field": field, "reason": reason, "raw": repr(raw)[:300]})

    for line, raw, problem in records:
        if problem:
            reject(line, None, problem, raw)
            continue
        missing = next((f for f in (options.text_field, options.label_field, options.id_field, options.split_field)
                        if f and f not in raw), None)
        if missing:
            reject(line, missing, "missing field", raw)
            continue
        text, label = raw[options.text_field], raw[options.label_field]
        if (why := _text_problem(text, options.max_chars)) is not None:
            reject(line, options.text_field, f"text {why}", raw)
            continue
        if (why := _text_problem(label, 200)) is not None:
            reject(line, options.label_field, f"label {why}", raw)
            continue
        row_id = str(raw[options.id_field]) if options.id_field else f"{id_prefix}{line}"
        if row_id in seen:
            reject(line, options.id_field, f"duplicate id {row_id!r} (first on line {seen[row_id]})", raw)
            continue
        seen[row_id] = line
        split = forced_split or (str(raw[options.split_field]).strip() if options.split_field else "")
        rows.append({"id": row_id, "text": text, "label": label.strip(), "_split": split})
    if not rows:
        first = "; ".join(f"line {r['line']}: {r['reason']}" for r in rejected[:3])
        raise DataError(path, f"no row could be imported ({len(rejected)} rejected; {first})")
    return rows, rejected


def _take_per_label(rows: list[dict], per_label: int, rng: random.Random) -> tuple[list[dict], list[dict]]:
    """Take up to per_label rows of each label (never more than a third of it); return (taken, rest)."""
    by_label: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_label[row["label"]].append(row)
    taken, rest = [], []
    for label in sorted(by_label):
        group = sorted(by_label[label], key=lambda r: r["id"])
        rng.shuffle(group)
        k = min(per_label, len(group) // 3)
        taken += group[:k]
        rest += group[k:]
    return taken, rest


def default_system_prompt(answers: list[str]) -> str:
    prompt = "Classify the message into exactly one category. Answer with the category name only."
    if len(answers) <= MAX_LABELS_IN_PROMPT:
        prompt += " Categories: " + ", ".join(answers) + "."
    return prompt


def label_words(label: str) -> str:
    return " ".join(label.replace("_", " ").replace("-", " ").split())


def distinct_first_word_answers(labels: list[str]) -> dict[str, str]:
    """Label -> its words rotated to start at a word no other answer starts with, moving as few words as possible.

    An assignment problem (labels to first words), solved exactly by scipy; function words lead only when nothing
    else is left, since `or stolen phone lost` says less than `stolen phone lost or`.
    """
    words = {label: label_words(label).split() for label in labels}
    firsts = sorted({word.lower() for ws in words.values() for word in ws})
    column = {word: j for j, word in enumerate(firsts)}
    unusable = float(10 * max(len(ws) for ws in words.values()) + 100)
    cost = np.full((len(labels), len(firsts)), unusable)
    for i, label in enumerate(labels):
        for position, word in enumerate(words[label]):
            penalty = position + (len(words[label]) if word.lower() in FUNCTION_WORDS else 0)
            cost[i, column[word.lower()]] = min(cost[i, column[word.lower()]], penalty)
    rows, cols = linear_sum_assignment(cost)  # with more labels than words, some labels get no row
    placed = {labels[i] for i, j in zip(rows, cols) if cost[i, j] < unusable}
    stuck = sorted(set(labels) - placed)
    if stuck:
        raise ContractError(f"labels {stuck} cannot each start with a word no other answer starts with; "
                            "write `answers` in task.yaml by hand")
    answers = {}
    for i, j in zip(rows, cols):
        ws = words[labels[i]]
        start = [w.lower() for w in ws].index(firsts[j])
        answers[labels[i]] = " ".join(ws[start:] + ws[:start])
    return answers


def import_task(source: str | Path, name: str, tasks_dir: str | Path, options: ImportOptions = ImportOptions(),
                test_source: str | Path | None = None) -> Path:
    """Write tasks_dir/name with task.yaml, seeds and dev/test/golden/adversarial; returns the folder.

    The test set is, in order of precedence: every row of `test_source`, the rows whose split
    column says `test_value`, or `test_per_label` rows of each label carved out with the seed.
    """
    source, folder = Path(source), Path(tasks_dir) / check_task_name(name, where="--name")
    if folder.exists():
        raise DataError(folder, "task folder exists; its eval sets are frozen. Choose another name or delete it")
    rows, rejected = _validated(source, options)
    rng = random.Random(options.seed)
    if test_source is not None:
        test, test_rejected = _validated(Path(test_source), options, id_prefix="t", forced_split=options.test_value)
        known = {r["label"] for r in rows}
        rejected += test_rejected + [{"file": Path(test_source).name, "line": int(r["id"][1:]), "field": options.label_field,
                                      "reason": f"label {r['label']!r} is not among the training file's labels",
                                      "raw": repr(r["text"])[:300]} for r in test if r["label"] not in known]
        test, pool = [r for r in test if r["label"] in known], rows
        if options.id_field and {r["id"] for r in test} & {r["id"] for r in pool}:
            raise DataError(test_source, "ids repeat ids of the training file", field=options.id_field)
    elif options.split_field:
        test = [r for r in rows if r["_split"] == options.test_value]
        pool = [r for r in rows if r["_split"] != options.test_value]
        if not test:
            raise DataError(source, f"no row has {options.split_field}={options.test_value!r}", field=options.split_field)
    else:
        test, pool = _take_per_label(rows, options.test_per_label, rng)
    dev, pool = _take_per_label(pool, options.dev_per_label, rng)
    golden, seeds = _take_per_label(pool, options.golden_per_label, rng)
    if not test or not dev:
        raise DataError(source, f"too few rows to carve a {'test' if not test else 'dev'} set ({len(rows)} rows imported, "
                                f"{len(rejected)} rejected): a label needs at least 3 rows", field=options.label_field)
    labels = sorted({r["label"] for r in rows + test})
    unseen = sorted({r["label"] for r in test} - {r["label"] for r in seeds})
    if unseen:
        raise DataError(source, f"labels {unseen} have test rows but no training rows", field=options.label_field)
    contract = {"type": "classification", "labels": {label: label_words(label) for label in labels}}
    try:  # refused before anything is written
        if options.distinct_first_words:
            contract["answers"] = distinct_first_word_answers(labels)
        elif options.answer_words:
            contract["answers"] = {label: label_words(label) for label in labels}
        answers = [build_contract(contract).render(label) for label in labels]
    except ContractError as exc:
        raise DataError(source, str(exc), field=options.label_field) from None

    def clean(part: list[dict], **extra) -> list[dict]:
        return [{"id": r["id"], "text": r["text"], "label": r["label"], **extra} for r in part]

    with atomic_dir(folder) as scratch:
        write_jsonl(scratch / "import_rejected.jsonl", rejected)
        write_jsonl(scratch / "seeds.jsonl", clean(seeds, source="import"))
        for split_name, part in (("dev", dev), ("test", test), ("golden", golden), ("adversarial", [])):
            write_jsonl(scratch / "eval" / f"{split_name}.jsonl", clean(part))
        spec = {
            "name": name,
            "description": f"Imported from {source.name}: {len(seeds) + len(dev) + len(golden) + len(test)} rows, {len(labels)} labels.",
            "contract": contract,
            "system_prompt": default_system_prompt(answers),
            "metrics": ["accuracy", "macro_f1"],
            "golden_sha256": sha256_rows([{"id": r["id"], "text": r["text"], "target": r["label"]} for r in golden]),
        }
        (scratch / "task.yaml").write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True, width=120), encoding="utf-8")
    return folder
