"""Train/validation/test splits of interaction sequences.

``leave_one_out``: each user's interactions in time order; the last one is the test item, the
second-last the validation item, the rest train (DESIGN.md, offline next-item protocol). Timestamp
ties keep the order of the ratings file, so a split is the same on every run.
``random_holdout``: the same shape with a seeded random order, for data without timestamps (ml-1m);
usable for CF training and random-split checks, not for next-item order.

Items are dense catalogue ``item_id``s and users dense indices 0..n_users-1 (``user_ids`` maps them
back to MovieLens user ids).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retrieval.catalog import Catalog
from retrieval.data import DataError, RawDataset


@dataclass
class Split:
    name: str                      # "leave-one-out-by-time" or "random-holdout"
    n_users: int
    n_items: int
    user_ids: np.ndarray           # (n_users,) MovieLens user id of each dense user index
    train: list[np.ndarray]        # per user: train item ids in time order
    train_ratings: list[np.ndarray]
    valid: np.ndarray              # (n_users,) validation item id, -1 if the user has too few items
    valid_rating: np.ndarray
    test: np.ndarray               # (n_users,) test item id, -1 if none
    test_rating: np.ndarray

    def user_index(self, movielens_user_id: int) -> int:
        """Dense index of a MovieLens user id; a clear error if the user is not in the data."""
        hit = np.flatnonzero(self.user_ids == int(movielens_user_id))
        if not len(hit):
            raise KeyError(f"user {movielens_user_id} is not in this data set "
                           f"(known ids {self.user_ids.min()}..{self.user_ids.max()}, {self.n_users} users)")
        return int(hit[0])

    def history(self, user: int, phase: str) -> np.ndarray:
        """What is known of a user when predicting ``phase``'s item ("valid": train; "test": train + valid)."""
        if phase == "valid" or self.valid[user] < 0:
            return self.train[user]
        if phase == "test":
            return np.append(self.train[user], self.valid[user])
        raise ValueError(f"unknown phase {phase!r}; known: valid, test")

    def popularity(self) -> np.ndarray:
        """(n_items,) train interaction counts."""
        return np.bincount(np.concatenate(self.train), minlength=self.n_items).astype(np.float64)


def _user_sequences(raw: RawDataset, catalog: Catalog, order):
    """(MovieLens user ids, per user (item ids, ratings) in ``order``), users sorted by id."""
    r = raw.ratings
    item_ids = catalog.item_ids_for_movielens(r["movielens_id"].values)
    if (item_ids < 0).any():
        bad = r["movielens_id"].values[item_ids < 0][:5]
        raise DataError(f"{raw.name}: ratings name movies missing from the catalogue: {bad.tolist()}")
    frame = r.assign(item_id=item_ids, row=np.arange(len(r)))
    users = np.sort(frame["user_id"].unique())
    seqs = []
    for _, g in frame.groupby("user_id", sort=True):
        g = order(g)
        seqs.append((g["item_id"].values.astype(np.int64), g["rating"].values.astype(np.float32)))
    return users, seqs


def _split(raw: RawDataset, catalog: Catalog, name: str, order) -> Split:
    users, seqs = _user_sequences(raw, catalog, order)
    train, train_r = [], []
    valid = np.full(len(users), -1, np.int64)
    test = np.full(len(users), -1, np.int64)
    valid_r = np.full(len(users), np.nan, np.float32)
    test_r = np.full(len(users), np.nan, np.float32)
    for u, (items, ratings) in enumerate(seqs):
        if len(items) >= 3:
            test[u], test_r[u] = items[-1], ratings[-1]
            valid[u], valid_r[u] = items[-2], ratings[-2]
            items, ratings = items[:-2], ratings[:-2]
        train.append(items)
        train_r.append(ratings)
    return Split(name, len(users), len(catalog), users, train, train_r, valid, valid_r, test, test_r)


def leave_one_out(raw: RawDataset, catalog: Catalog) -> Split:
    """Leave-one-out by timestamp; a clear error for data without timestamps."""
    if not raw.has_timestamps:
        raise DataError(f"{raw.name} has no timestamps in this copy, so there is no next-item order; "
                        f"use random_holdout for CF training and random-split checks")
    return _split(raw, catalog, "leave-one-out-by-time",
                  lambda g: g.sort_values(["timestamp", "row"], kind="stable"))


def random_holdout(raw: RawDataset, catalog: Catalog, seed: int = 0) -> Split:
    """The same shape as leave_one_out with each user's items in a seeded random order."""
    rng = np.random.default_rng(seed)
    return _split(raw, catalog, "random-holdout", lambda g: g.iloc[rng.permutation(len(g))])


def last_positive_holdout(raw: RawDataset, catalog: Catalog, min_rating: float = 4.0) -> Split:
    """The conversational protocol's split: each user's target is the last item rated at least
    ``min_rating`` (the ``test`` item); ``train`` holds only what the user rated before it, so a
    model fitted on ``train`` never sees a target or anything after it. ``valid`` is -1 (none).
    """
    def order(g):
        return g.sort_values(["timestamp", "row"], kind="stable") if raw.has_timestamps else g

    users, seqs = _user_sequences(raw, catalog, order)
    train, train_r = [], []
    test = np.full(len(users), -1, np.int64)
    test_r = np.full(len(users), np.nan, np.float32)
    for u, (items, ratings) in enumerate(seqs):
        pos = np.flatnonzero(ratings >= min_rating)
        if len(pos) and pos[-1] >= 1:  # a target with at least one item before it
            t = pos[-1]
            test[u], test_r[u] = items[t], ratings[t]
            items, ratings = items[:t], ratings[:t]
        train.append(items)
        train_r.append(ratings)
    none = np.full(len(users), -1, np.int64)
    return Split("last-positive-holdout", len(users), len(catalog), users, train, train_r,
                 none, np.full(len(users), np.nan, np.float32), test, test_r)
