import numpy as np

from factory.lib.near_dups import NearCopyIndex, clusters, jaccard, semantic_neighbours, shingles


def test_near_copy_index_finds_edited_copies_and_confirms_by_exact_jaccard():
    corpus = ["I want to cancel my subscription before it renews next month",
              "How do I change the delivery address on my order?",
              "The app crashes every time I open the camera view"]
    index = NearCopyIndex(corpus, threshold=0.8)
    hits = index.query(["i want to CANCEL my subscription before it renews next month!",
                        "how do I change the delivery address on my order??",
                        "Completely unrelated words about the weather"])
    assert hits == [[0], [1], []]
    for i, hit in enumerate(hits[:2]):
        assert jaccard(shingles(["i want to CANCEL my subscription before it renews next month!",
                                 "how do I change the delivery address on my order??"][i]), shingles(corpus[hit[0]])) >= 0.8


def test_pairs_and_clusters_link_chains():
    texts = ["alpha beta gamma delta epsilon zeta", "alpha beta gamma delta epsilon zeta!", "something else", "other"]
    pairs = NearCopyIndex(texts, threshold=0.8).pairs()
    assert pairs == [(0, 1)]
    labels = clusters(5, [(0, 1), (1, 4)])
    assert labels[0] == labels[1] == labels[4] and len({labels[0], labels[2], labels[3]}) == 3


def test_semantic_neighbours_match_brute_force_above_the_threshold():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(200, 32)).astype(np.float32)
    twins = base[:20] + rng.normal(scale=0.05, size=(20, 32)).astype(np.float32)
    corpus = np.vstack([base, twins])
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    found = semantic_neighbours(corpus, corpus, 0.95, skip_self=True)
    brute = [set(np.nonzero(corpus @ corpus[i] >= 0.95)[0]) - {i} for i in range(len(corpus))]
    assert [set(hit.tolist()) for hit in found] == brute
    assert sum(map(len, brute)) == 40  # the 20 planted pairs, both ways


def test_pairs_just_above_the_threshold_are_found_every_time():
    # One letter swapped in a short question: Jaccard 0.854, which LSH at 0.8 itself missed.
    a, b = "What fiat currencies are used for exchange?", "Waht fiat currencies are used for exchange?"
    assert 0.8 < jaccard(shingles(a), shingles(b)) < 0.86
    assert NearCopyIndex([a, b], 0.8).pairs() == [(0, 1)]
    assert NearCopyIndex([a], 0.8).query([b]) == [[0]]
    typos = [f"How do I top up my card with {w} from my bank account today?" for w in ("cash", "money", "funds", "euros")]
    edited = [t.replace("top up", "tpo up") for t in typos]
    assert NearCopyIndex(typos, 0.8).query(edited) == [[0], [1], [2], [3]]
