"""Popularity recommender: every user gets the items ranked by their train interaction count.

The baseline of the collaborative-filtering recommenders (``bpr.py``, ``sasrec.py``) and the same
duck-typed interface: ``fit(train_seqs, n_items)``, ``score(user_idx, histories)``,
``item_embeddings()``, ``user_embeddings(histories)``. Masking of seen items is the caller's job.
"""
from __future__ import annotations

import time

import numpy as np


class Popularity:
    """Scores an item by how many train interactions it has (the same list for every user)."""

    name = "pop"
    user_repr = "constant 1 (popularity has no per-user state); item vector is log(1 + train count)"

    def __init__(self):
        self.counts: np.ndarray | None = None   # (n_items,) float32 train interaction counts

    def fit(self, train_seqs: list[np.ndarray], n_items: int, **_) -> dict:
        """Count the train interactions of each item.

        Returns:
            {"train_s": float, "loss_curve": []} (popularity has no loss).
        """
        start = time.perf_counter()
        seqs = [np.asarray(s, dtype=np.int64) for s in train_seqs]
        flat = np.concatenate(seqs) if seqs else np.zeros(0, np.int64)
        self.counts = np.bincount(flat, minlength=n_items).astype(np.float32)
        self.n_users = len(seqs)
        return {"train_s": time.perf_counter() - start, "loss_curve": []}

    def _check_fitted(self) -> None:
        if self.counts is None:
            raise RuntimeError("Popularity is not fitted; call fit(train_seqs, n_items) first")

    def score(self, user_idx: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
        """(B, n_items) float32: the train counts, the same for every user."""
        self._check_fitted()
        return np.tile(self.counts, (len(user_idx), 1))

    def item_embeddings(self) -> np.ndarray:
        """(n_items, 1) float32: log(1 + count), so a dot product with a user vector of 1 ranks by popularity."""
        self._check_fitted()
        return np.log1p(self.counts)[:, None].astype(np.float32)

    def user_embeddings(self, histories: list[np.ndarray]) -> np.ndarray:
        """(len(histories), 1) float32 of ones: popularity has no per-user state."""
        return np.ones((len(histories), 1), dtype=np.float32)
