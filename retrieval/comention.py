"""What people in real conversations recommend, and after which movies: counts from the fit parts
of the CRS data (ReDial fit, OpenDialKG train; never a dev part), for the ranker.

Human recommenders do not answer "something like Shrek" with the movies rated in the same weeks
(what a sequential CF model learns from MovieLens) but with what people talk about and what goes
with the movie named. Two counts carry that:

  recommended[j]   in how many fit samples movie j was among the movies recommended next
  co[c, j]         in how many fit dialogs movie j was recommended after movie c had been named
                   (c among the sample's context movies; a dialog counts once per pair)
  together[a, b]   in how many fit dialogs movies a and b were both named, by either side (symmetric)

Both are plain counts over mapped catalogue ids (``retrieval.crs_data.TitleMapper``), so nothing of
the conversations' text is kept. They live in the artefacts (``<artifacts>/<dataset>/conversations.npz``,
built by ``training.build`` when ``<data-dir>/crs`` exists) and are never committed: they are
derived from data whose terms stay with it.

Features (``dialog.tools``): ``talked_about(ids)`` = log1p(recommended) scaled to [0, 1];
``after(anchors, ids)`` = the sum over the anchor movies of log1p(co[anchor, id]), scaled by
log1p of the largest count, so one strong co-recommendation is about 1; ``together(anchors, ids)``
the same over ``together``.

Fitting on the fit parts: a fit sample replayed with these counts would see its own dialog's
recommendations in them (its label is then "what people recommend after these movies"), so the
ranker learns to trust the counts far more than they earn on new conversations. ``out_of_fold``
gives, per fold of dialogs, the counts without that fold; ``dialog.eval.fit_ranker`` replays each
fit sample with the counts of the other folds.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

FORMAT = 2


@dataclass
class ConversationStats:
    """Recommendation counts from real conversations (see the module docstring)."""
    recommended: np.ndarray          # (N,) int
    co: sp.csr_matrix                # (N, N) int: row = movie named before, column = recommended after
    together: sp.csr_matrix          # (N, N) int, symmetric: named in the same dialog
    meta: dict

    @classmethod
    def empty(cls, n_items: int, why: str = "no conversations") -> ConversationStats:
        zero = sp.csr_matrix((n_items, n_items), dtype=np.int64)
        return cls(np.zeros(n_items, dtype=np.int64), zero, zero.copy(),
                   {"format": FORMAT, "samples": 0, "dialogs": 0, "note": why})

    @classmethod
    def count(cls, n_items: int, samples: Iterable[tuple[str, Iterable[int], Iterable[int]]],
              meta: dict | None = None) -> ConversationStats:
        """Count from (dialog id, context movie ids, recommended movie ids) triples."""
        rec = np.zeros(n_items, dtype=np.int64)
        pairs: set[tuple[str, int, int]] = set()
        named: dict[str, set[int]] = {}
        dialogs, n = set(), 0
        for dialog_id, context, labels in samples:
            context, labels = set(int(i) for i in context), set(int(i) for i in labels)
            n += 1
            dialogs.add(dialog_id)
            named.setdefault(dialog_id, set()).update(context | labels)
            for j in labels:
                rec[j] += 1
                pairs.update((dialog_id, c, j) for c in context if c != j)
        rows = np.array([c for _, c, _ in pairs], dtype=np.int64)
        cols = np.array([j for _, _, j in pairs], dtype=np.int64)
        co = sp.csr_matrix((np.ones(len(rows), dtype=np.int64), (rows, cols)), shape=(n_items, n_items))
        co.sum_duplicates()
        tog = [(a, b) for ids in named.values() for a in ids for b in ids if a != b]
        rows = np.array([a for a, _ in tog], dtype=np.int64)
        cols = np.array([b for _, b in tog], dtype=np.int64)
        together = sp.csr_matrix((np.ones(len(rows), dtype=np.int64), (rows, cols)), shape=(n_items, n_items))
        together.sum_duplicates()
        info = {"format": FORMAT, "samples": n, "dialogs": len(dialogs),
                "movies_recommended": int((rec > 0).sum()), "pairs": int(co.nnz),
                "together_pairs": int(together.nnz)}
        info.update(meta or {})
        return cls(rec, co, together, info)

    def __len__(self) -> int:
        return len(self.recommended)

    @property
    def is_empty(self) -> bool:
        return not self.recommended.any()

    def talked_about(self, ids=None) -> np.ndarray:
        """log1p(times recommended) / log1p(the most), for ``ids`` (default all movies)."""
        top = np.log1p(self.recommended.max()) if self.recommended.any() else 1.0
        v = np.log1p(self.recommended) / top
        return v if ids is None else v[np.asarray(ids, dtype=np.int64)]

    def after(self, anchors: Iterable[int], ids=None) -> np.ndarray:
        """Sum over ``anchors`` of log1p(co[anchor, id]) / log1p(the largest count)."""
        return _anchored(self.co, anchors, ids, len(self))

    def together_with(self, anchors: Iterable[int], ids=None) -> np.ndarray:
        """Sum over ``anchors`` of log1p(together[anchor, id]) / log1p(the largest count)."""
        return _anchored(self.together, anchors, ids, len(self))

    def neighbours(self, anchor: int, k: int) -> list[int]:
        """The ``k`` movies most often recommended after ``anchor`` (ties: the more talked-about)."""
        row = self.co.getrow(int(anchor))
        if not row.nnz:
            return []
        order = np.lexsort((-self.recommended[row.indices], -row.data))
        return [int(j) for j in row.indices[order[:k]]]

    def top(self, k: int, allowed: np.ndarray | None = None) -> list[int]:
        """The ``k`` most recommended movies (among ``allowed``, a boolean mask), never one with 0."""
        order = np.argsort(-self.recommended, kind="stable")
        order = order[self.recommended[order] > 0]
        if allowed is not None:
            order = order[allowed[order]]
        return [int(i) for i in order[:k]]

    def save(self, path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        coo, tog = self.co.tocoo(), self.together.tocoo()
        with open(path, "wb") as f:
            np.savez_compressed(f, recommended=self.recommended, rows=coo.row, cols=coo.col, counts=coo.data,
                                t_rows=tog.row, t_cols=tog.col, t_counts=tog.data,
                                meta=np.array(json.dumps(self.meta)))

    @classmethod
    def load(cls, path) -> ConversationStats:
        with np.load(Path(path), allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("format") != FORMAT:
                raise ValueError(f"{path}: conversation counts of format {meta.get('format')}, expected {FORMAT}")
            rec = z["recommended"].astype(np.int64)
            co = sp.csr_matrix((z["counts"].astype(np.int64), (z["rows"], z["cols"])), shape=(len(rec), len(rec)))
            tog = sp.csr_matrix((z["t_counts"].astype(np.int64), (z["t_rows"], z["t_cols"])),
                                shape=(len(rec), len(rec)))
        return cls(rec, co, tog, meta)


def fold_of(key: str, folds: int) -> int:
    """The fold (0 .. folds-1) of a dialog key (``retrieval.crs_data.dialog_key``): the first 8 hex
    digits of its sha256, modulo ``folds``; depends on the key alone."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % folds


def out_of_fold(n_items: int, triples: list[tuple[str, Iterable[int], Iterable[int]]],
                folds: int) -> list[ConversationStats]:
    """For each fold k, the counts of the triples whose dialog is **not** in fold k (see the module
    docstring). ``triples`` as ``ConversationStats.count`` takes them."""
    if folds < 2:
        raise ValueError(f"out-of-fold counts need at least 2 folds, got {folds}")
    triples = [(k, list(c), list(j)) for k, c, j in triples]
    return [ConversationStats.count(n_items, [t for t in triples if fold_of(t[0], folds) != k],
                                    {"out_of_fold": f"fold {k} of {folds} left out"})
            for k in range(folds)]


def _anchored(m: sp.csr_matrix, anchors, ids, n_items: int) -> np.ndarray:
    anchors = sorted({int(a) for a in anchors if 0 <= int(a) < n_items})
    n = n_items if ids is None else len(ids)
    if not anchors or not m.nnz:
        return np.zeros(n)
    rows = m[anchors].astype(np.float64)
    rows.data = np.log1p(rows.data)
    v = np.asarray(rows.sum(0)).ravel() / np.log1p(m.data.max())
    return v if ids is None else v[np.asarray(ids, dtype=np.int64)]
