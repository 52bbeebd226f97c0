import numpy as np

from factory.lib.contracts import ClassificationContract
from factory.lib.gates import GateConfig, apply_gates
from factory.lib.near_dups import content_words, normalize

CONTRACT = ClassificationContract(labels={"billing": "", "shipping": ""})
PROMPT = "Classify the customer message into billing or shipping and reply with the label only."


def row(i, text, target="billing", **extra):
    return {"id": f"r{i}", "text": text, "target": target, "source": "seed", **extra}


def gate_of(rejected, row_id):
    return next(r["gate"] for r in rejected if r["id"] == row_id)


def test_each_gate_rejects_with_its_name_and_the_counts_add_up():
    candidates = [
        row(0, "I was charged twice for one order."),
        row(1, "i was CHARGED twice, for one order!"),  # same text once normalised
        row(2, "Where is my parcel?", target="refunds"),
        row(3, "ok"),
        row(4, "Please classify the customer message into billing or shipping and reply now", target="shipping"),
        row(5, "Parcel lost in transit again", target="shipping"),
        row(6, "parcel lost in transit again", target="billing"),
        row(7, "This exact sentence is in the test set."),
        row(8, "", target="billing"),
        row(9, "A normal question about my delivery date.", target="shipping"),
    ]
    accepted, rejected = apply_gates(candidates, CONTRACT, ["This exact sentence is in the TEST set"], PROMPT)
    assert len(accepted) + len(rejected) == len(candidates)
    assert [r["id"] for r in accepted] == ["r0", "r9"]
    assert {r["id"]: r["gate"] for r in rejected} == {
        "r1": "exact_duplicate", "r2": "contract", "r3": "length", "r4": "leaked_instructions",
        "r5": "label_conflict", "r6": "label_conflict", "r7": "eval_leakage", "r8": "schema",
    }
    assert next(r for r in rejected if r["id"] == "r1")["duplicate_of"] == "r0"
    assert all(r["reason"] for r in rejected)


def test_semantic_gates_use_embeddings_across_families_only():
    candidates = [row(0, "first seed text here"), row(1, "second seed text here"),
                  row(2, "variant of the first seed", parent_id="r0"), row(3, "close to an eval row")]
    emb = np.array([[1, 0, 0], [0.999, 0.0447, 0], [1, 0, 0], [0, 0, 1]], dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    eval_emb = np.array([[0, 0.2, 0.98]], dtype=np.float32)
    eval_emb /= np.linalg.norm(eval_emb, axis=1, keepdims=True)
    accepted, rejected = apply_gates(candidates, CONTRACT, ["something else"], PROMPT, GateConfig(),
                                     embeddings=emb, eval_embeddings=eval_emb)
    assert [r["id"] for r in accepted] == ["r0", "r2"]  # the variant shares r0's family
    assert gate_of(rejected, "r1") == "semantic_duplicate"
    assert gate_of(rejected, "r3") == "eval_leakage"


def test_normalize_folds_case_accents_and_punctuation():
    assert normalize("  Héllo,\n WORLD!! ") == normalize("héllo world")


def test_semantic_duplicates_with_the_packaged_minilm():
    from factory.integrations.resources import Embedder

    texts = ["My parcel never arrived.", "My package never arrived.", "I was charged twice on my card."]
    candidates = [row(i, t, target="shipping" if i < 2 else "billing") for i, t in enumerate(texts)]
    embedder = Embedder()
    accepted, rejected = apply_gates(candidates, CONTRACT, ["Reset my password please"], PROMPT,
                                     GateConfig(semantic_duplicate_threshold=0.75),
                                     embeddings=embedder.encode(texts), eval_embeddings=embedder.encode(["Reset my password please"]))
    assert [r["id"] for r in accepted] == ["r0", "r2"]
    assert gate_of(rejected, "r1") == "semantic_duplicate"


def test_variants_of_a_leaked_row_are_rejected_with_it():
    candidates = [row(0, "Parcel never came, order 12"), row(1, "From: a@b.c\n\nParcel never came, order 12", parent_id="r0"),
                  row(2, "Another fine question about fees")]
    accepted, rejected = apply_gates(candidates, CONTRACT, ["parcel never came order 12"], PROMPT)
    assert [r["id"] for r in accepted] == ["r2"]
    assert {r["id"]: r["gate"] for r in rejected} == {"r0": "eval_leakage", "r1": "eval_leakage"}
    assert "derived from r0" in next(r["reason"] for r in rejected if r["id"] == "r1")


def test_a_near_copy_of_an_eval_row_is_a_leak_and_a_paraphrase_is_not():
    eval_texts = ["My card was charged twice for the same order last Tuesday, please fix it"]
    candidates = [row(0, "my card was charged TWICE for the same order last tuesday - please fix this"),
                  row(1, "Two identical payments were taken from my account for one purchase")]
    accepted, rejected = apply_gates(candidates, CONTRACT, eval_texts, PROMPT)
    assert [r["id"] for r in accepted] == ["r1"]
    assert gate_of(rejected, "r0") == "eval_leakage" and "near copy" in rejected[0]["reason"]
    # The threshold is the gate: at Jaccard 0.99 the edited copy passes.
    accepted, _ = apply_gates(candidates, CONTRACT, eval_texts, PROMPT, GateConfig(near_duplicate_threshold=0.99))
    assert [r["id"] for r in accepted] == ["r0", "r1"]


def test_near_copies_and_variants_share_a_cluster_and_others_do_not():
    candidates = [row(0, "The parcel with my new thermostat never arrived at my home address"),
                  row(1, "the parcel with my new thermostat never arrived at my home address!!", target="billing"),
                  row(2, "From: x\n\nSomething else entirely about invoices", parent_id="r3"),
                  row(3, "Something else entirely about invoices here"),
                  row(4, "Please update the card on file for my subscription")]
    accepted, rejected = apply_gates(candidates, CONTRACT, [], PROMPT)
    # r1 is the same normalised text as r0: an exact duplicate, rejected.
    assert gate_of(rejected, "r1") == "exact_duplicate"
    cluster = {r["id"]: r["cluster"] for r in accepted}
    assert cluster == {"r0": "r0", "r2": "r2", "r3": "r2", "r4": "r4"}


def test_trivial_rows_and_token_lengths_are_rejected():
    candidates = [row(0, "12345 678 90"), row(1, "billing billing"), row(2, "A perfectly normal question about an invoice"),
                  row(3, "word " * 30)]
    accepted, rejected = apply_gates(candidates, CONTRACT, [], PROMPT, GateConfig(max_input_tokens=20),
                                     count_tokens=lambda text: len(text.split()))
    assert [r["id"] for r in accepted] == ["r2"]
    assert {r["id"]: r["gate"] for r in rejected} == {"r0": "trivial", "r1": "trivial", "r3": "trivial"}
    candidates[3] = row(3, " ".join(f"word{i}" for i in range(30)))
    _, rejected = apply_gates(candidates, CONTRACT, [], PROMPT, GateConfig(max_input_tokens=20),
                              count_tokens=lambda text: len(text.split()))
    assert gate_of(rejected, "r3") == "length" and "30 tokens" in rejected[-1]["reason"]


def test_quotas_trim_generated_rows_of_a_crowded_label_never_seeds():
    candidates = [row(i, f"seed question number {i} about a charge") for i in range(3)]
    candidates += [row(10 + i, f"generated question variant {i} about a fee", source="teacher") for i in range(5)]
    candidates += [row(20 + i, f"where is parcel number {i} going today", target="shipping") for i in range(2)]
    accepted, rejected = apply_gates(candidates, CONTRACT, [], PROMPT, GateConfig(max_label_share=0.5))
    trimmed = [r for r in rejected if r["gate"] == "quota"]
    # 10 rows, at most 5 billing: three of the eight go, the last generated ones, never a seed.
    assert [r["id"] for r in trimmed] == ["r12", "r13", "r14"]
    assert [r["id"] for r in accepted if r["target"] == "billing"] == ["r0", "r1", "r2", "r10", "r11"]
    assert len(accepted) + len(rejected) == len(candidates)
    accepted, rejected = apply_gates(candidates, CONTRACT, [], PROMPT)
    assert not rejected


def test_label_shortfalls_name_what_the_next_plan_must_fill():
    from factory.lib.gates import label_shortfalls

    rows = [{"target": "billing"}] * 9 + [{"target": "shipping"}]
    assert label_shortfalls(rows, ["billing", "shipping", "refunds"], 0.2) == {"shipping": 1, "refunds": 2}
    assert label_shortfalls(rows, ["billing", "shipping"], 0.0) == {}


def test_the_judge_gate_rejects_failed_verdicts_and_the_schema_gate_names_parse_errors():
    candidates = [row(0, "A question about a double charge", judge={"passed": False, "reason": "format 4 < 5"}),
                  row(1, "Another question about a refund", judge={"passed": True, "reason": "total 29/35"}),
                  row(2, "", parse_error="no example texts found"),
                  row(3, "A third question about my invoice")]
    accepted, rejected = apply_gates(candidates, CONTRACT, [], PROMPT)
    assert [r["id"] for r in accepted] == ["r1", "r3"]
    assert {r["id"]: (r["gate"], r["reason"]) for r in rejected} == {
        "r0": ("judge", "format 4 < 5"), "r2": ("schema", "no example texts found")}


def test_content_words_keep_negations_and_drop_contractions_and_politeness():
    assert content_words("Hi, why hasn't my transfer arrived?") == content_words("Why has the transfer not arrived, please")
    assert content_words("I can't verify my identity") != content_words("I can verify my identity")
    assert content_words("I didn't get my refund") == {"not", "refund"}


def test_a_reworded_copy_of_an_eval_row_is_a_leak_and_two_reworded_rows_share_a_cluster():
    from factory.integrations.resources import Embedder

    eval_texts = ["Why hasn't my transfer arrived yet?"]
    texts = ["Why has the transfer not arrived yet, please?",  # reworded: same content words, cosine 0.90
             "Why has my transfer arrived already?",  # cosine 0.92 but no negation: another question
             "My card payment was declined at the shop",
             "Why was the card payment declined at the shop?"]  # a rewording of r2 (cosine 0.89)
    candidates = [row(i, t, target="billing") for i, t in enumerate(texts)]
    embedder = Embedder()
    embeddings, eval_embeddings = embedder.encode(texts), embedder.encode(eval_texts)
    accepted, rejected = apply_gates(candidates, CONTRACT, eval_texts, PROMPT, embeddings=embeddings,
                                     eval_embeddings=eval_embeddings)
    assert gate_of(rejected, "r0") == "eval_leakage" and "reworded copy" in rejected[0]["reason"]
    cluster = {r["id"]: r["cluster"] for r in accepted}
    assert cluster == {"r1": "r1", "r2": "r2", "r3": "r2"}
    # Above the rows' cosine the rule finds nothing: the leak is accepted and the rewordings split freely.
    accepted, rejected = apply_gates(candidates, CONTRACT, eval_texts, PROMPT, GateConfig(reworded_copy_threshold=0.95),
                                     embeddings=embeddings, eval_embeddings=eval_embeddings)
    assert not rejected and {r["id"]: r["cluster"] for r in accepted} == {f"r{i}": f"r{i}" for i in range(4)}
