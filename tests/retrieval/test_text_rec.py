"""Text-only and hybrid recommenders on hand-made embeddings."""
import numpy as np
import pytest

from retrieval.text_rec import HybridConfig, HybridRecommender, TextRecConfig, TextRecommender

EMB = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [0.7, 0.7]], dtype=np.float32)


def test_profile_weights_recent_items_more():
    rec = TextRecommender(EMB, TextRecConfig(decay=0.1))
    s = rec.score(np.array([0]), [np.array([2, 0])])[0]  # latest item 0 dominates
    assert s[1] > s[3]
    s = TextRecommender(EMB, TextRecConfig(decay=0.1)).score(np.array([0]), [np.array([0, 2])])[0]
    assert s[3] > s[1]


def test_empty_history_scores_zero_and_bad_sizes_fail():
    rec = TextRecommender(EMB)
    assert np.allclose(rec.score(np.array([0]), [np.array([], dtype=np.int64)]), 0)
    with pytest.raises(ValueError, match="5 text embeddings"):
        rec.fit([], n_items=7)


def test_hybrid_interpolates_between_its_parts():
    class CF:
        def score(self, users, histories):
            return np.tile(np.array([5.0, 4, 3, 2, 1]), (len(users), 1))

    text = TextRecommender(EMB)
    h = [np.array([2])]
    only_cf = HybridRecommender(CF(), text, HybridConfig(alpha=1.0)).score(np.array([0]), h)[0]
    only_text = HybridRecommender(CF(), text, HybridConfig(alpha=0.0)).score(np.array([0]), h)[0]
    assert np.argmax(only_cf) == 0 and np.argmax(only_text) == 2
    mid = HybridRecommender(CF(), text, HybridConfig(alpha=0.5)).score(np.array([0]), h)[0]
    assert np.allclose(mid, (only_cf + only_text) / 2)
