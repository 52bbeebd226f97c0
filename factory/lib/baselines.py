"""Deterministic baselines that need no language model."""
from __future__ import annotations

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, make_pipeline


def tfidf_logreg(train_texts: list[str], train_targets: list[str], seed: int = 0):
    """Word + character n-gram TF-IDF with logistic regression: the bar a fine-tune must clear."""
    features = FeatureUnion([
        ("word", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)),
        ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=1)),
    ])
    model = make_pipeline(features, LogisticRegression(C=10.0, max_iter=2000, random_state=seed))
    return model.fit(train_texts, train_targets)
