"""Item co-occurrence factorisation: item vectors from a truncated SVD of the positive pointwise
mutual information (PPMI) of items consumed by the same users (Levy & Goldberg 2014's word-vector
recipe applied to users' item sets).

Where SASRec's embeddings of rarely seen items stay close to their random initialisation, every
co-occurrence an item has moves its PPMI row, so the tail gets structure from few ratings. Used as
(or beside) the Q-Former's CF input (``training.ilm_stage1``). Deterministic: the SVD starts from a
fixed vector, so the same training split gives the same vectors on every machine.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds


@dataclass
class CoocConfig:
    dim: int = 64
    max_items_per_user: int = 200   # the most recent items of a user that count (long histories
                                    # would dominate the counts quadratically)
    shift: float = 1.0              # PMI minus log(shift) before clipping at 0 (SPPMI; 1 = plain)
    smoothing: float = 0.75         # context-distribution smoothing exponent


class CoocFactors:
    """``fit(train_seqs, n_items)`` then ``item_embeddings()``: (n_items, dim) float32; items with
    no training interactions get zero rows."""

    def __init__(self, config: CoocConfig | None = None):
        self.config = config or CoocConfig()
        self._items: np.ndarray | None = None

    def fit(self, train_seqs: list[np.ndarray], n_items: int) -> dict:
        cfg = self.config
        rows, cols = [], []
        for u, seq in enumerate(train_seqs):
            items = np.unique(np.asarray(seq, dtype=np.int64)[-cfg.max_items_per_user:])
            rows.append(np.full(len(items), u))
            cols.append(items)
        if not rows or not sum(len(c) for c in cols):
            raise ValueError("co-occurrence needs at least one training interaction")
        rows, cols = np.concatenate(rows), np.concatenate(cols)
        ui = sp.csr_matrix((np.ones(len(rows), dtype=np.float64), (rows, cols)),
                           shape=(len(train_seqs), n_items))
        co = (ui.T @ ui).tocoo()                     # item x item counts, diagonal = item counts
        keep = co.row != co.col
        r, c, v = co.row[keep], co.col[keep], co.data[keep]
        total = v.sum()
        row_sum = np.bincount(r, weights=v, minlength=n_items)
        col_sum = np.bincount(c, weights=v, minlength=n_items) ** cfg.smoothing
        col_sum = col_sum / col_sum.sum() * total
        pmi = np.log(v * total / (row_sum[r] * col_sum[c])) - np.log(cfg.shift)
        pos = pmi > 0
        ppmi = sp.csr_matrix((pmi[pos], (r[pos], c[pos])), shape=(n_items, n_items))
        k = min(cfg.dim, n_items - 1)
        v0 = np.ones(n_items) / np.sqrt(n_items)     # a fixed start: the same vectors everywhere
        u, s, _ = svds(ppmi, k=k, v0=v0)
        order = np.argsort(-s)
        emb = u[:, order] * np.sqrt(s[order])
        emb *= np.sign(emb.sum(axis=0, keepdims=True) + 1e-12)  # a fixed sign per component
        if k < cfg.dim:
            emb = np.pad(emb, ((0, 0), (0, cfg.dim - k)))
        self._items = emb.astype(np.float32)
        return {"nnz": int(ppmi.nnz), "singular_values": [round(float(x), 3) for x in s[order][:5]]}

    def item_embeddings(self) -> np.ndarray:
        if self._items is None:
            raise RuntimeError("CoocFactors is not fitted: call fit first")
        return self._items

    def config_dict(self) -> dict:
        return asdict(self.config)
