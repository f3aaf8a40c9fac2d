"""Stage-1 batches: items with their texts, a co-consumed item and a user who consumed them.

Built from the training split only. A seeded fraction of the items with training interactions is
held out: their texts are never trained on, so item<->text retrieval among them measures how well
the Q-Former generalises to items it has not seen paired with text (the stage-1 report). A second
fraction (``val_frac``) is kept apart the same way for choosing the epoch (validation), so the
held-out items are measured once.

Batch keys are those of ``ItemQFormer.forward`` (see ``ilm/qformer.py``).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ilm.features import CFTable


class Stage1Data:
    """Samples stage-1 batches.

    Args:
        train: per user, training item ids in time order (``Split.train``).
        texts: one text per catalogue item (``Catalog.items["text"]``).
        table: the items' CF embeddings.
        tokenize: ``texts -> (ids (B, T), mask (B, T))`` for the Q-Former's text side; None when
            no loss reads token ids (a frozen text side without ITM and ITG).
        holdout_frac: fraction of the items with training interactions held out.
        text_targets: optional (n_items, d_text) fixed text embeddings (batch key ``text_target``).
        val_frac: fraction of the same items kept apart for validation.
        window: a co-consumed positive is at most this many steps from the item in a user's sequence.
        history_len: how many of a user's items form its CF side.
    """

    def __init__(self, train: Sequence[np.ndarray], texts: Sequence[str], table: CFTable, tokenize,
                 holdout_frac: float = 0.1, window: int = 5, history_len: int = 20, seed: int = 0,
                 text_targets: np.ndarray | None = None, val_frac: float = 0.0):
        if len(texts) != table.n_items:
            raise ValueError(f"{len(texts)} texts for {table.n_items} CF rows")
        if text_targets is not None and len(text_targets) != table.n_items:
            raise ValueError(f"{len(text_targets)} text embeddings for {table.n_items} CF rows")
        if holdout_frac + val_frac >= 1:
            raise ValueError(f"holdout_frac + val_frac must be < 1, got {holdout_frac} + {val_frac}")
        self.text_targets = (None if text_targets is None
                             else torch.as_tensor(np.asarray(text_targets, dtype=np.float32)))
        self.train = [np.asarray(s, dtype=np.int64) for s in train]
        self.texts, self.table, self.tokenize = list(texts), table, tokenize
        self.window, self.history_len = window, history_len
        self.rng = np.random.default_rng(seed)
        counts = np.bincount(np.concatenate(self.train) if self.train else np.zeros(0, np.int64),
                             minlength=table.n_items)
        seen = np.flatnonzero(counts > 0)
        perm = np.random.default_rng(seed).permutation(seen)
        n_hold = int(round(holdout_frac * len(seen)))
        n_val = int(round(val_frac * len(seen)))
        self.heldout_items = np.sort(perm[:n_hold])
        self.val_items = np.sort(perm[n_hold:n_hold + n_val])
        self.train_items = np.sort(perm[n_hold + n_val:])
        if len(self.train_items) < 2:
            raise ValueError("stage 1 needs at least two items with training interactions")
        self.counts = counts  # training interactions per item (the popularity buckets)
        self._is_heldout = np.zeros(table.n_items, dtype=bool)  # held out or validation
        self._is_heldout[self.heldout_items] = True
        self._is_heldout[self.val_items] = True
        # where each item occurs: (user, position) pairs
        users = np.concatenate([np.full(len(s), u) for u, s in enumerate(self.train)])
        positions = np.concatenate([np.arange(len(s)) for s in self.train])
        items = np.concatenate(self.train)
        order = np.argsort(items, kind="stable")
        self._occ_users, self._occ_pos = users[order], positions[order]
        self._occ_start = np.concatenate([[0], np.cumsum(counts)])

    def __len__(self) -> int:
        return len(self.train_items)

    def epoch(self, batch_size: int) -> list[np.ndarray]:
        """The training items in a fresh random order, in batches (the last one may be smaller,
        but never below 2 items: ITM needs a negative)."""
        perm = self.rng.permutation(self.train_items)
        batches = [perm[s:s + batch_size] for s in range(0, len(perm), batch_size)]
        if len(batches) > 1 and len(batches[-1]) < 2:
            batches[-2] = np.concatenate(batches[-2:])
            batches.pop()
        return batches

    def _occurrence(self, item: int) -> tuple[int, int]:
        lo, hi = self._occ_start[item], self._occ_start[item + 1]
        k = self.rng.integers(lo, hi)
        return int(self._occ_users[k]), int(self._occ_pos[k])

    def _co_consumed(self, user: int, pos: int, item: int) -> int:
        seq = self.train[user]
        lo, hi = max(0, pos - self.window), min(len(seq), pos + self.window + 1)
        options = [int(j) for j in seq[lo:hi] if j != item and not self._is_heldout[j]]
        return int(self.rng.choice(options)) if options else item

    def _user_history(self, user: int, pos: int) -> np.ndarray:
        """The user's items before ``pos`` (or, for a first item, after it), without the item."""
        seq = self.train[user]
        before = seq[max(0, pos - self.history_len):pos]
        return before if len(before) else seq[pos + 1:pos + 1 + self.history_len]

    def batch(self, item_ids: np.ndarray) -> dict[str, torch.Tensor]:
        item_ids = np.asarray(item_ids, dtype=np.int64)
        pos_ids, histories = [], []
        for i in item_ids:
            user, pos = self._occurrence(int(i))
            pos_ids.append(self._co_consumed(user, pos, int(i)))
            hist = self._user_history(user, pos)
            histories.append(hist if len(hist) else np.array([i]))  # a one-item user: itself
        user_feats, user_mask = self.table.histories(histories, self.history_len)
        out = {"cf_feats": self.table.items(item_ids), "item_ids": torch.from_numpy(item_ids),
               "pos_cf_feats": self.table.items(pos_ids),
               "pos_item_ids": torch.as_tensor(pos_ids, dtype=torch.long),
               "user_cf_feats": user_feats, "user_cf_mask": user_mask}
        return out | self.text_batch(item_ids)

    def text_batch(self, item_ids: np.ndarray) -> dict[str, torch.Tensor]:
        """The text side of some items: ``text_ids``/``text_mask`` (with a tokenizer) and
        ``text_target`` (with fixed text embeddings)."""
        out = {}
        if self.tokenize is not None:
            out["text_ids"], out["text_mask"] = self.tokenize([self.texts[i] for i in item_ids])
        if self.text_targets is not None:
            out["text_target"] = self.text_targets[torch.as_tensor(np.asarray(item_ids, dtype=np.int64))]
        return out
