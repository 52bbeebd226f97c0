import numpy as np

from factory.lib.mislabels import likely_mislabels


def test_planted_label_flips_are_found_and_clean_rows_mostly_left_alone():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16)) * 3
    labels = [f"label{k}" for k in range(4)]
    targets = [labels[k] for k in range(4) for _ in range(30)]
    points = np.vstack([centres[k] + rng.normal(size=(30, 16)) for k in range(4)])
    flipped = [3, 40, 75, 110]
    for i in flipped:
        targets[i] = labels[(labels.index(targets[i]) + 1) % 4]
    suspects = likely_mislabels(points, targets, seed=0)
    found = {s.index for s in suspects}
    assert set(flipped) <= found
    assert len(found - set(flipped)) <= 2
    first = next(s for s in suspects if s.index == 3)
    assert first.given == "label1" and first.suggested == "label0" and first.self_confidence < 0.2


def test_labels_too_small_to_judge_are_never_flagged():
    rng = np.random.default_rng(1)
    points = rng.normal(size=(21, 8))
    targets = ["a"] * 10 + ["b"] * 10 + ["lonely"]
    assert all(targets[s.index] != "lonely" for s in likely_mislabels(points, targets))
    assert likely_mislabels(points[:10], ["a"] * 10) == []
