"""Ranking metrics on hand-computed cases, ties counted against the model."""
import math

import numpy as np

from retrieval.metrics import evaluate, rank_metrics, target_ranks


def test_rank_counts_ties_against_the_model():
    scores = np.array([[0.1, 0.5, 0.5, 0.2, 0.9]])
    # target 1 ties with item 2 and is beaten by item 4: rank 2 (third place)
    assert target_ranks(scores, np.array([1]), [np.array([], int)]).tolist() == [2]
    # a constant model puts the target last among the 5 items
    assert target_ranks(np.zeros((1, 5)), np.array([0]), [np.array([], int)]).tolist() == [4]


def test_excluded_items_are_not_candidates():
    scores = np.array([[0.9, 0.8, 0.1, 0.7]])
    assert target_ranks(scores, np.array([2]), [np.array([0, 1])]).tolist() == [1]
    # NaN is the worst score
    assert target_ranks(np.array([[np.nan, 0.2, 0.1]]), np.array([0]), [np.array([], int)]).tolist() == [2]


def test_hr_and_ndcg_by_hand():
    m = rank_metrics(np.array([0, 3, 7, 30]), ks=(5, 10))
    assert m["hr@5"] == 0.5 and m["hr@10"] == 0.75
    assert math.isclose(m["ndcg@5"], (1 + 1 / math.log2(5)) / 4)
    assert math.isclose(m["ndcg@10"], (1 + 1 / math.log2(5) + 1 / math.log2(9)) / 4)


def test_evaluate_uses_the_right_history_per_phase():
    class Split:
        valid = np.array([2, -1])
        test = np.array([3, 1])
        train = [np.array([0]), np.array([0, 2])]

        def history(self, u, phase):
            return self.train[u] if phase == "valid" or self.valid[u] < 0 else np.append(self.train[u], self.valid[u])

    class Oracle:  # scores each user's history items highest, then the item id
        def score(self, users, histories):
            s = np.tile(np.arange(5, dtype=float), (len(users), 1))
            for b, h in enumerate(histories):
                s[b, h] = 100
            return s

    v = evaluate(Oracle(), Split(), "valid", ks=(1,), return_ranks=True)
    assert v["n_users"] == 1 and v["ranks"].tolist() == [2]  # item 2 behind 4, 3 (0 excluded)
    t = evaluate(Oracle(), Split(), "test", ks=(1,), return_ranks=True)
    # user 0: target 3 behind 4 (0 and 2 excluded); user 1 has no valid item: target 1 behind 4 and 3
    assert t["ranks"].tolist() == [1, 2]
