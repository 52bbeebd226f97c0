"""The eval report: every model side by side on the same rows, the best baseline, and the release gates."""
from __future__ import annotations

import base64
import html
import io

INTERNAL = ("finetuned", "previous_release", "candidate_")  # model names that are not baselines
CANDIDATE = "candidate_minilm_logreg"  # the `minilm_logreg` baseline answered through the served runtime


def headline(scores: dict) -> float:
    """The task's main score: macro-F1 for classification, exact match for extraction."""
    return scores.get("macro_f1", scores.get("exact_match", 0.0))


def best_baseline(models: dict[str, dict], test_rows: int) -> str | None:
    """The baseline with the best test headline among those that answered every test row (a sample is not comparable)."""
    scored = [(headline(sets["test"]), name) for name, sets in models.items()
              if not name.startswith(INTERNAL) and "test" in sets and sets["test"].get("rows", test_rows) == test_rows]
    return max(scored)[1] if scored else None


def release_gates(served: dict, gates, best: tuple[str, float] | None = None, previous: dict | None = None,
                  golden_critical_failures: int = 0) -> dict[str, dict]:
    """Each release gate of the task against the served model's scores; `previous` is the last release's test scores."""
    golden = served.get("golden", {})
    test = served.get("test", {})
    result = {
        "min_test_macro_f1": (headline(test), gates.min_test_macro_f1, ">="),
        "max_invalid_rate": (max((s.get("invalid_rate", 0.0) for s in served.values()), default=0.0), gates.max_invalid_rate, "<="),
        "golden_min_accuracy": (golden.get("accuracy", golden.get("exact_match", 0.0)), gates.golden_min_accuracy, ">="),
        "max_golden_critical_failures": (golden_critical_failures, gates.max_golden_critical_failures, "<="),
    }
    if gates.beat_best_baseline and best is not None:
        result["beat_best_baseline"] = (headline(test), best[1], ">=")
    if gates.max_latency_p95_ms > 0:
        result["max_latency_p95_ms"] = (test.get("latency_p95_ms", 0.0), gates.max_latency_p95_ms, "<=")
    if previous is not None and "per_label" in previous and "per_label" in test:
        drops = {label: previous["per_label"][label]["recall"] - scores["recall"]
                 for label, scores in test["per_label"].items() if label in previous["per_label"]}
        worst = max(drops, key=drops.get, default=None)
        result["max_class_recall_drop"] = (drops.get(worst, 0.0), gates.max_class_recall_drop, "<=")
    out = {}
    for name, (value, threshold, op) in result.items():
        passed = value >= threshold if op == ">=" else value <= threshold
        out[name] = {"value": value, "threshold": threshold, "passed": bool(passed)}
    if "beat_best_baseline" in out:
        out["beat_best_baseline"]["baseline"] = best[0]
    if "max_class_recall_drop" in out:
        out["max_class_recall_drop"]["label"] = worst
    return out


def _number(value) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


def failed_gates(gates: dict[str, dict]) -> list[str]:
    return [f"{name} ({_number(g['value'])} vs {_number(g['threshold'])})" for name, g in gates.items() if not g["passed"]]


def comparison_rows(models: dict[str, dict], set_name: str = "test", order: list[str] | None = None) -> list[dict]:
    """One row a model, in `order` (baselines first, the served model last): its scores on one eval set."""
    rows = []
    for name in order or list(models):
        scores = models[name].get(set_name)
        if scores:
            rows.append({"model": name, **{k: v for k, v in scores.items() if isinstance(v, (int, float))}})
    return rows


COLUMNS = ("rows", "accuracy", "macro_f1", "invalid_rate", "ece", "latency_p50_ms", "latency_p95_ms", "cost_per_1k")
HTML_COLUMNS = (*COLUMNS[:7], "requests_per_s", "peak_rss_mib", "cost_per_1k")


def _cell(column: str, value) -> str:
    if value is None:
        return ""
    if column in ("rows", "peak_rss_mib"):
        return f"{value:.0f}"
    if column == "requests_per_s":
        return f"{value:.1f}"
    if column.endswith("_ms"):
        return f"{value:.1f}"
    if column == "cost_per_1k":
        return f"${value:.4f}"
    return f"{value:.3f}"


def markdown_table(rows: list[dict], columns: tuple[str, ...] = COLUMNS) -> str:
    present = [c for c in columns if any(c in r for r in rows)]
    lines = ["| model | " + " | ".join(present) + " |", "|---" * (len(present) + 1) + "|"]
    for row in rows:
        lines.append(f"| {row['model']} | " + " | ".join(_cell(c, row.get(c)) for c in present) + " |")
    return "\n".join(lines)


def gates_markdown(gates: dict[str, dict]) -> str:
    lines = ["| gate | value | threshold | result |", "|---|---|---|---|"]
    for name, g in gates.items():
        extra = f" ({g['baseline']})" if "baseline" in g else (f" ({g['label']})" if g.get("label") else "")
        lines.append(f"| {name}{extra} | {_number(g['value'])} | {_number(g['threshold'])} | "
                     f"{'passed' if g['passed'] else 'FAILED'} |")
    return "\n".join(lines)


def confusion_png(confusion: dict, title: str) -> bytes:
    """The confusion matrix as a PNG (matplotlib, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, matrix = confusion["labels"], confusion["matrix"]
    size = max(4.0, 0.45 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            if count:
                ax.text(j, i, str(count), ha="center", va="center", fontsize=7,
                        color="white" if count > max(map(max, matrix)) / 2 else "black")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def _html_table(rows: list[dict], columns: tuple[str, ...] = HTML_COLUMNS) -> str:
    present = [c for c in columns if any(c in r for r in rows)]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["model", *present])
    body = "".join("<tr><td>" + html.escape(str(r["model"])) + "</td>" +
                   "".join(f"<td>{_cell(c, r.get(c))}</td>" for c in present) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_report(title: str, sections: list[tuple[str, str]], tables: dict[str, list[dict]], gates: dict[str, dict],
                per_label: dict, images: dict[str, bytes]) -> str:
    """One self-contained page: inline CSS, PNGs as data URIs, nothing fetched from the network."""
    parts = [f"<h1>{html.escape(title)}</h1>"]
    for heading, text in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2><p>{html.escape(text)}</p>")
    for name, rows in tables.items():
        parts.append(f"<h2>{html.escape(name)}</h2>{_html_table(rows)}")
    gate_rows = "".join(f"<tr class={'pass' if g['passed'] else 'fail'}><td>{html.escape(n)}</td><td>{_number(g['value'])}</td>"
                        f"<td>{_number(g['threshold'])}</td><td>{'passed' if g['passed'] else 'FAILED'}</td></tr>" for n, g in gates.items())
    parts.append("<h2>Release gates</h2><table><thead><tr><th>gate</th><th>value</th><th>threshold</th><th>result</th>"
                 f"</tr></thead><tbody>{gate_rows}</tbody></table>")
    if per_label:
        label_rows = "".join(f"<tr><td>{html.escape(label)}</td><td>{s['precision']:.3f}</td><td>{s['recall']:.3f}</td>"
                             f"<td>{s['f1']:.3f}</td><td>{s['support']}</td></tr>" for label, s in per_label.items())
        parts.append("<h2>Per label (served model, test)</h2><table><thead><tr><th>label</th><th>precision</th>"
                     f"<th>recall</th><th>F1</th><th>support</th></tr></thead><tbody>{label_rows}</tbody></table>")
    for caption, png in images.items():
        parts.append(f"<h2>{html.escape(caption)}</h2><img alt='{html.escape(caption)}' "
                     f"src='data:image/png;base64,{base64.b64encode(png).decode()}'>")
    style = ("body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}"
             "tr.pass td:last-child{color:#070}tr.fail td:last-child{color:#b00;font-weight:bold}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")


def add_costs(models: dict[str, dict], price_per_cpu_hour: float) -> None:
    """Cost per 1,000 requests for every local model: its CPU-seconds a request at the given price."""
    from factory.lib.metrics import cost_per_1k

    for sets in models.values():
        for scores in sets.values():
            if "cost_per_1k" not in scores and scores.get("cpu_seconds_per_request"):
                scores["cost_per_1k"] = cost_per_1k(scores["cpu_seconds_per_request"], price_per_cpu_hour)


def build_report(partition: str, task, models: dict[str, dict], served: str, test_predictions: dict[str, list[dict]],
                 golden_critical_failures: int, previous: dict | None, skipped: dict[str, str],
                 quantization: dict, candidate_critical_failures: int = 0) -> dict:
    """Everything the report says, as data: models in order (baselines, then the fine-tunes, the served one last), the
    best baseline and a McNemar test against it, and every release gate."""
    from factory.lib.metrics import mcnemar

    test_rows = models[served]["test"]["rows"]
    best = best_baseline(models, test_rows)
    head_to_head = None
    if best is not None and best in test_predictions:
        ours = {p["id"]: p for p in test_predictions[served]}
        theirs = {p["id"]: p["prediction"] for p in test_predictions[best]}
        ids = [i for i in ours if i in theirs]
        head_to_head = {"baseline": best, **mcnemar([ours[i]["target"] for i in ids], [ours[i]["prediction"] for i in ids],
                                                   [theirs[i] for i in ids])}
    gates = release_gates(models[served], task.release_gates,
                          (best, headline(models[best]["test"])) if best else None, previous, golden_critical_failures)
    candidate_gates = None
    if CANDIDATE in models:
        candidate_gates = candidate_release_gates(models, served, task.release_gates, previous, candidate_critical_failures)
    order = [n for n in models if not n.startswith(INTERNAL)] + sorted(n for n in models if n.startswith(INTERNAL) and n != served) + [served]
    return {"partition": partition, "models": models, "model_order": order, "served_model": served,
            "best_baseline": best, "head_to_head": head_to_head, "release_gates": gates, "skipped": skipped,
            "quantization": quantization, "golden_critical_failures": golden_critical_failures,
            "candidate_gates": candidate_gates, "release": release_choice(served, gates, candidate_gates)}


def candidate_release_gates(models: dict[str, dict], served: str, gates, previous: dict | None,
                            golden_critical_failures: int) -> dict[str, dict]:
    """The encoder candidate's gates: the task's own, and it must beat the fine-tune and every other baseline (itself
    as a baseline aside), whatever `beat_best_baseline` says; it is released only in the fine-tune's place."""
    source = CANDIDATE.removeprefix("candidate_")
    rivals = {n: m for n, m in models.items() if n != source}
    test_rows = models[CANDIDATE]["test"]["rows"]
    contenders = [(headline(models[served]["test"]), served)]
    if (best := best_baseline(rivals, test_rows)) is not None:
        contenders.append((headline(models[best]["test"]), best))
    score, rival = max(contenders)
    return release_gates(models[CANDIDATE], gates.model_copy(update={"beat_best_baseline": True}), (rival, score),
                         previous, golden_critical_failures)


def release_choice(served: str, gates: dict[str, dict], candidate_gates: dict[str, dict] | None) -> dict:
    """What is released: the fine-tune when every gate passed, else the encoder candidate when every one of its gates
    passed, else nothing."""
    if not failed_gates(gates):
        return {"model": served, "kind": "gguf", "reason": "the fine-tune passed every release gate"}
    if candidate_gates is not None and not failed_gates(candidate_gates):
        return {"model": CANDIDATE, "kind": "encoder",
                "reason": f"the fine-tune failed {', '.join(failed_gates(gates))}; the encoder candidate (MiniLM "
                          "embeddings + logistic regression, not a generative model) passed every gate"}
    return {"model": None, "kind": None, "reason": "no candidate passed every release gate"}


def report_markdown(report: dict) -> str:
    """The report as Markdown: the test table, every other set for the served model, the comparison, the gates."""
    served = report["served_model"]
    parts = [f"# Eval report {report['partition']}", "", "Test set, every model on the same rows (served model last):", "",
             markdown_table(comparison_rows(report["models"], order=report["model_order"]))]
    if report["skipped"]:
        parts += ["", "Skipped: " + "; ".join(f"{k}: {v}" for k, v in report["skipped"].items())]
    parts += ["", f"Served model `{served}` on every eval set:", "",
              markdown_table([{"model": name, **{k: v for k, v in s.items() if isinstance(v, (int, float))}}
                              for name, s in report["models"][served].items()])]
    h2h = report["head_to_head"]
    if h2h:
        parts += ["", f"Best baseline: **{h2h['baseline']}**. Head to head on {h2h['rows']} test rows: only the fine-tune "
                      f"right {h2h['only_first_right']}, only the baseline right {h2h['only_second_right']}, "
                      f"McNemar exact p = {h2h['p_value']:.3g}."]
    q = report["quantization"]
    if q:
        parts += ["", f"Quantization: {q['reason']}."]
    parts += ["", "Release gates:", "", gates_markdown(report["release_gates"])]
    if report.get("candidate_gates"):
        parts += ["", f"Release gates of the encoder candidate `{CANDIDATE}`:", "", gates_markdown(report["candidate_gates"])]
    if report.get("release"):
        released = report["release"]
        parts += ["", f"Released: **{released['model'] or 'nothing'}** ({released['reason']})."]
    return "\n".join(parts) + "\n"
