from factory.lib.augment import OPERATIONS, augment

SEEDS = [{"id": "s1", "text": "Hello, my parcel has not arrived and the tracking page shows nothing since Monday. "
                            "Could you please check what happened to order NW-123 and tell me when it will come?",
          "target": "shipping", "source": "seed"},
         {"id": "s2", "text": "I was charged twice.", "target": "billing", "source": "seed"}]


def test_same_seed_same_rows_and_other_seed_other_rows():
    assert augment(SEEDS, 3, seed=1) == augment(SEEDS, 3, seed=1)
    assert augment(SEEDS, 3, seed=1) != augment(SEEDS, 3, seed=2)


def test_variants_keep_target_and_record_provenance():
    rows = augment(SEEDS, 2, seed=0)
    assert len(rows) == 4
    for row in rows:
        parent = next(s for s in SEEDS if s["id"] == row["parent_id"])
        assert row["target"] == parent["target"]
        assert row["id"].startswith(parent["id"] + "~aug")
        assert row["source"] == "augment" and row["generator"] == "format_augmenter"
        assert set(row["operations"].split(",")) <= set(OPERATIONS)
    assert len({r["id"] for r in rows}) == 4


def test_each_operation_keeps_the_message_body():
    import random

    body = SEEDS[0]["text"]
    for name, op in OPERATIONS.items():
        out = op(body, random.Random(0))
        if name == "truncate":
            assert body.startswith(out) and len(out) < len(body)
        elif name == "noise":
            assert out.split() and out != ""
        else:
            assert body in out and out != body
