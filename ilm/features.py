"""The CF side the Q-Former reads: a table of item embeddings and padded user histories.

An item's CF feature is its row of a collaborative-filtering model's item embeddings (SASRec by
default, ``retrieval/embeddings.py`` format); a user is the sequence of its history's rows.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


class CFTable:
    """Item CF embeddings as a float tensor, with helpers that batch items and histories."""

    def __init__(self, item_embeds: np.ndarray | torch.Tensor):
        emb = torch.as_tensor(np.asarray(item_embeds, dtype=np.float32))
        if emb.dim() != 2 or not len(emb):
            raise ValueError(f"item embeddings must be a non-empty (n_items, d) array, got {tuple(emb.shape)}")
        self.embeds = emb

    @property
    def n_items(self) -> int:
        return self.embeds.shape[0]

    @property
    def dim(self) -> int:
        return self.embeds.shape[1]

    def items(self, item_ids: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        """(n, d) features of the given items."""
        ids = torch.as_tensor(np.asarray(item_ids, dtype=np.int64), device=self.embeds.device)
        if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= self.n_items):
            raise IndexError(f"item id outside 0..{self.n_items - 1}: {ids.tolist()[:5]}")
        return self.embeds[ids]

    def histories(self, histories: Sequence[Sequence[int]], max_len: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """The last ``max_len`` items of each history, right-aligned.

        Returns:
            feats (B, L, d) and mask (B, L) bool, L = min(max_len, longest history).
        Raises:
            ValueError: a history is empty (a user needs at least one item).
        """
        lengths = [min(len(h), max_len) for h in histories]
        if not histories or min(lengths) == 0:
            raise ValueError("every history needs at least one item")
        L = max(lengths)
        feats = torch.zeros(len(histories), L, self.dim, device=self.embeds.device)
        mask = torch.zeros(len(histories), L, dtype=torch.bool, device=self.embeds.device)
        for b, (h, n) in enumerate(zip(histories, lengths)):
            ids = np.asarray(h, dtype=np.int64)[-n:]
            feats[b, L - n:] = self.items(ids)
            mask[b, L - n:] = True
        return feats, mask
