"""Near and semantic duplicates with no n x n matrix anywhere.

Near copies: MinHash LSH (datasketch) over character 5-gram shingles of the normalised text, every LSH candidate
confirmed by its exact Jaccard similarity (LSH alone lets some false pairs through). Semantic duplicates: an
approximate nearest-neighbour index (usearch, HNSW) over L2-normalised embeddings, the k nearest per row kept when
their cosine reaches the threshold. Reworded copies ("Why hasn't my transfer arrived yet?" / "Why has the transfer not
arrived yet, please?") fall between the two: under the character Jaccard of near copies and often under the cosine of semantic duplicates,
so they are neighbours at a lower cosine whose content words (scikit-learn's English stop words left out, negations
kept) are the same. Clusters are connected components (scipy) of the pairs found.
"""
from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence

import numpy as np

SHINGLE_CHARS = 5  # short texts (one-line queries) have too few word n-grams; character 5-grams separate them well
NUM_PERM = 128
NEIGHBOURS = 16  # semantic neighbours looked at per row; a row with more near-equal twins is caught through them


def normalize(text: str) -> str:
    """Case, accents, punctuation and spacing folded: what 'the same text' means for exact gates."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"[^\w\s]", " ", text)
    return re.sub(r"\s+", " ", text).strip()


NEGATIONS = frozenset({"not", "no", "nor", "never", "cannot", "none", "nothing", "nobody", "nowhere"})
# Auxiliaries scikit-learn's list lacks, greetings, and what contractions leave ("I'm" -> "i", "m").
EXTRA_STOP_WORDS = frozenset({"does", "did", "doing", "having", "shall", "hi", "hello", "hey", "thanks", "thank",
                              "s", "m", "ve", "ll", "d", "re"})
MIN_CONTENT_WORDS = 2  # with fewer, equal content words say little about two texts


@functools.cache
def _stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return (ENGLISH_STOP_WORDS - NEGATIONS) | EXTRA_STOP_WORDS


def content_words(text: str) -> frozenset[str]:
    """The words that carry a text's meaning: stop words, greetings and contractions' tails left out; every negation
    kept as one word, so "I can't pay" and "I can pay" differ and "didn't" equals "did not"."""
    text = re.sub(r"\bcan[’']t\b", "cannot", text, flags=re.IGNORECASE)
    text = re.sub(r"\bwon[’']t\b", "will not", text, flags=re.IGNORECASE)
    text = re.sub(r"n[’']t\b", " not", text, flags=re.IGNORECASE)
    skip = _stop_words()
    return frozenset("not" if word in NEGATIONS else word for word in normalize(text).split() if word not in skip)


def reworded(a: frozenset[str], b: frozenset[str]) -> bool:
    """Two texts' content words (`content_words`) make them rewordings of each other."""
    return len(a) >= MIN_CONTENT_WORDS and a == b


def shingles(text: str, size: int = SHINGLE_CHARS) -> set[bytes]:
    folded = normalize(text)
    if len(folded) <= size:
        return {folded.encode()}
    return {folded[i : i + size].encode() for i in range(len(folded) - size + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


class NearCopyIndex:
    """MinHash LSH over a corpus: which corpus rows have Jaccard >= threshold with a query text."""

    def __init__(self, texts: Sequence[str], threshold: float, seed: int = 1):
        from datasketch import MinHash, MinHashLSH

        self.threshold, self.seed = threshold, seed
        self.shingles = [shingles(t) for t in texts]
        self._minhash = MinHash
        # LSH at the confirming threshold finds a true pair at Jaccard 0.8 only ~40% of the time (9 bands of 13 rows);
        # 0.2 lower finds ~99% of them (18 bands of 7). Extra candidates cost only their exact Jaccard check.
        self.lsh = MinHashLSH(threshold=min(max(threshold - 0.2, 0.3), 0.9), num_perm=NUM_PERM)
        # One insertion session: the in-memory storage is written in bulk, ~3x faster than insert() per row.
        with self.lsh.insertion_session() as session:
            for i, signature in enumerate(self._signatures(self.shingles)):
                session.insert(i, signature, check_duplication=False)

    def _signatures(self, sets: list[set[bytes]]):
        return self._minhash.bulk(sets, num_perm=NUM_PERM, seed=self.seed)

    def query(self, texts: Sequence[str]) -> list[list[int]]:
        """For each query text, the corpus indices it near-copies (confirmed by exact Jaccard), ascending."""
        query_sets = [shingles(t) for t in texts]
        out = []
        for query_set, signature in zip(query_sets, self._signatures(query_sets)):
            hits = [j for j in self.lsh.query(signature) if jaccard(query_set, self.shingles[j]) >= self.threshold]
            out.append(sorted(hits))
        return out

    def pairs(self) -> list[tuple[int, int]]:
        """Every confirmed near-copy pair (i < j) within the corpus itself."""
        found = set()
        for i, signature in enumerate(self._signatures(self.shingles)):
            for j in self.lsh.query(signature):
                if j > i and jaccard(self.shingles[i], self.shingles[j]) >= self.threshold:
                    found.add((i, j))
        return sorted(found)


def semantic_neighbours(query: np.ndarray, corpus: np.ndarray, threshold: float, k: int = NEIGHBOURS,
                        skip_self: bool = False) -> list[np.ndarray]:
    """For each query row, corpus indices with cosine >= threshold among its k approximate nearest neighbours."""
    if not len(query) or not len(corpus):
        return [np.zeros(0, dtype=np.int64) for _ in range(len(query))]
    from usearch.index import Index

    index = Index(ndim=corpus.shape[1], metric="cos", dtype="f32")
    index.add(np.arange(len(corpus)), np.ascontiguousarray(corpus, dtype=np.float32))
    matches = index.search(np.ascontiguousarray(query, dtype=np.float32), min(k + int(skip_self), len(corpus)))
    keys = np.asarray(matches.keys).reshape(len(query), -1)
    similarity = 1.0 - np.asarray(matches.distances).reshape(len(query), -1)
    out = []
    for i, (row_keys, row_sims) in enumerate(zip(keys, similarity)):
        hit = row_keys[(row_sims >= threshold - 1e-6) & (row_keys < len(corpus))].astype(np.int64)
        out.append(hit[hit != i] if skip_self else hit)
    return out


def clusters(n: int, pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """Connected components of the pair graph: rows[i] and rows[j] share a label when linked through any chain."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if not pairs:
        return np.arange(n)
    rows, cols = zip(*pairs)
    graph = coo_matrix((np.ones(len(pairs)), (rows, cols)), shape=(n, n))
    return connected_components(graph, directed=False)[1]
