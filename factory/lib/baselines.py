"""Baselines the fine-tune must beat, fit on the same training rows and scored on the same eval rows."""
from __future__ import annotations

import time

import numpy as np
from sklearn.dummy import DummyClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, make_pipeline

from factory.lib.metrics import score_predictions


def majority(train_texts: list[str], train_targets: list[str]):
    """The most frequent training label for every row: the floor any model must clear."""
    return DummyClassifier(strategy="most_frequent").fit(np.zeros((len(train_targets), 1)), train_targets)


def tfidf_logreg(train_texts: list[str], train_targets: list[str], seed: int = 0):
    """Word + character n-gram TF-IDF with logistic regression: the bar a fine-tune must clear."""
    features = FeatureUnion([
        ("word", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)),
        ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=1)),
    ])
    model = make_pipeline(features, LogisticRegression(C=10.0, max_iter=2000, random_state=seed))
    return model.fit(train_texts, train_targets)


def embedding_logreg(train_embeddings: np.ndarray, train_targets: list[str], seed: int = 0):
    """Logistic regression on sentence embeddings (MiniLM by default): the strongest cheap baseline on Banking77."""
    return embedding_classifier(seed).fit(train_embeddings, train_targets)


def embedding_classifier(seed: int = 0) -> LogisticRegression:
    return LogisticRegression(C=10.0, max_iter=3000, random_state=seed)


def label_prompt(answers: list[str]) -> str:
    """The base model's zero-shot instruction: every answer it may give, listed."""
    return ("Classify the message into exactly one of these categories. Answer with the category name only.\n"
            "Categories: " + ", ".join(answers))


def few_shot_prompts(prompt: str, query_embeddings: np.ndarray, train_embeddings: np.ndarray,
                     train_rows: list[dict], render, shots: int) -> list[str]:
    """For each query, `prompt` followed by its `shots` nearest training rows (cosine on normalised embeddings)."""
    if not len(train_rows) or shots <= 0:
        return [prompt] * len(query_embeddings)
    shots = min(shots, len(train_rows))
    prompts = []
    for row in query_embeddings:
        nearest = np.argsort(-(train_embeddings @ row))[:shots]
        # Examples cut to 200 characters: a long e-mail would make each few-shot prompt several times the row's cost.
        examples = "\n".join(f"{train_rows[i]['text'][:200]!r} -> {render(train_rows[i]['target'])}" for i in nearest)
        prompts.append(f"{prompt}\n\nExamples:\n{examples}")
    return prompts


class Predictor:
    """A fitted baseline: called with texts it gives (labels, confidences); `model` is the fitted estimator."""

    def __init__(self, model, features):
        self.model, self.features = model, features

    def __call__(self, texts: list[str]) -> tuple[list[str], list[float]]:
        probabilities = self.model.predict_proba(self.features(texts))
        best = probabilities.argmax(axis=1)
        return [str(self.model.classes_[i]) for i in best], probabilities.max(axis=1).tolist()


def classical_predictors(train_texts: list[str], train_targets: list[str], train_embeddings: np.ndarray | None, encode,
                         seed: int = 0) -> dict[str, Predictor]:
    """name -> Predictor, each fit once on the training rows."""
    fitted = {"majority": Predictor(majority(train_texts, train_targets), lambda texts: np.zeros((len(texts), 1))),
              "tfidf_logreg": Predictor(tfidf_logreg(train_texts, train_targets, seed), lambda texts: texts)}
    if train_embeddings is not None:
        fitted["minilm_logreg"] = Predictor(embedding_logreg(train_embeddings, train_targets, seed), encode)
    return fitted


def score_predictor(predict, rows: list[dict], contract, latency_rows: int = 50) -> tuple[dict, list[dict]]:
    """Every row answered in one batch; latency and CPU time from the first `latency_rows` answered one at a time,
    as a server would."""
    labels, confidences = predict([r["text"] for r in rows])
    timed = rows[:latency_rows]
    latencies, wall, cpu = [], time.perf_counter(), time.process_time()
    for row in timed:
        started = time.perf_counter()
        predict([row["text"]])
        latencies.append((time.perf_counter() - started) * 1000)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    predictions = [{"id": r["id"], "target": r["target"], "prediction": contract.parse_answer(contract.render(label)),
                    "confidence": conf, "latency_ms": latencies[i] if i < len(latencies) else None}
                   for i, (r, label, conf) in enumerate(zip(rows, labels, confidences))]
    return score_predictions(predictions, contract, wall, cpu), predictions
