"""The encoder candidate's runtime refuses what it cannot serve honestly, before loading any model."""
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from factory.lib.task import load_task
from factory.runtime.encoder import EncoderClassifier, is_encoder, save_encoder
from factory.training.evaluate import EvalConfig, load_model


def _encoder(folder, labels):
    features = np.random.default_rng(0).normal(size=(len(labels) * 2, 8))
    save_encoder(folder, LogisticRegression().fit(features, labels * 2), "all-MiniLM-L6-v2")
    return folder


def test_an_encoder_answering_labels_the_task_lacks_is_refused(tiny_task, tmp_path):
    folder = _encoder(tmp_path / "encoder", ["billing", "refunds"])
    assert is_encoder(folder) and not is_encoder(tmp_path)
    with pytest.raises(ValueError, match=r"answers labels the task does not have: \['refunds'\]"):
        EncoderClassifier(folder, load_task(tiny_task))


def test_an_encoder_has_no_free_generation_to_score(tiny_task, tmp_path):
    folder = _encoder(tmp_path / "encoder", ["billing", "login"])
    config = EvalConfig(model=str(folder), task_dir=str(tiny_task), eval_files={}, output_dir=str(tmp_path / "out"),
                        decoding="free")
    with pytest.raises(ValueError, match="is an encoder classifier: it has only the served path"):
        load_model(config, load_task(tiny_task), threads=1)
