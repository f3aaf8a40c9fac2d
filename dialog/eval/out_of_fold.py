"""Replay fit samples of the CRS data with conversation counts that do not contain their own dialog.

The product's conversation counts (``retrieval.comention``) are counted on the CRS fit parts. A fit
sample replayed with them finds its own recommendations there, so anything fitted or chosen on fit
samples (the ranker's weights in ``dialog.eval.fit_ranker``, a mixing weight in
``dialog.eval.llm_rerank``) would learn to trust the counts more than they earn on new
conversations. Measured on the shipped weights before this module: ReDial fit recall@10 0.669
against dev 0.132. Here the fit dialogs are split into ``folds`` by the sha256 of
``<dataset>/<dialog_id>`` (``retrieval.comention.fold_of``) and each fold is replayed with the counts
of the other folds, as a dev sample is replayed with counts that never saw it.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from retrieval.comention import ConversationStats, fold_of, out_of_fold
from retrieval.crs_data import dialog_key, fit_triples

DEFAULT_FOLDS = 5


@dataclass
class OutOfFold:
    """Per fold, the conversation counts without that fold's dialogs."""
    stats: list[ConversationStats]

    @property
    def folds(self) -> int:
        return len(self.stats)

    @classmethod
    def from_fit_parts(cls, res, data_dir=None, folds: int = DEFAULT_FOLDS) -> OutOfFold:
        """Counted from the same fit triples as the artefact's ``conversations.npz``."""
        triples, _ = fit_triples(res.catalog, res.popularity, data_dir)
        return cls(out_of_fold(len(res.catalog), triples, folds))

    def fold(self, sample) -> int:
        """The fold of a ``retrieval.crs_data.EvalSample`` (or ``CRSSample``)."""
        return fold_of(dialog_key(getattr(sample, "sample", sample)), self.folds)

    def replayed(self, manager, samples: list) -> Iterator:
        """The samples, fold by fold (input order within a fold), each yielded while ``manager``
        ranks with the counts of the other folds; the manager's own counts are back afterwards,
        also when the loop stops early."""
        tools = manager.tools
        original = tools.talk
        try:
            for k in range(self.folds):
                tools.use_conversations(self.stats[k])
                for s in samples:
                    if self.fold(s) == k:
                        yield s
        finally:
            tools.use_conversations(original)
