"""BPR matrix factorisation (Rendle et al. 2009, "BPR: Bayesian Personalized Ranking from Implicit
Feedback") in torch.

Owns the model, its config and its training loop. Every train interaction (u, i) is a positive;
each epoch visits all of them once in a seeded random order and pairs each with one negative j
drawn uniformly from the items u has not interacted with in train. The loss is
``-log sigmoid(x_ui - x_uj) + reg * (|p_u|^2 + |q_i|^2 + |q_j|^2)`` averaged over a batch, with
``x_ui = p_u . q_i``, optimised with Adam on whole vectorised batches (ml-100k trains in seconds).

Interface (shared with ``pop.py`` and ``sasrec.py``): ``fit``, ``score``, ``item_embeddings``,
``user_embeddings``. A user index outside the trained users (or -1) is scored with the mean of its
history's item vectors, so a cold-start user with a few known items still gets a ranking.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm


@dataclass
class BPRConfig:
    dim: int = 64
    lr: float = 5e-3
    reg: float = 1e-3          # L2 weight on the batch's user and item vectors
    epochs: int = 30
    batch_size: int = 1024
    seed: int = 0
    progress: bool = False     # tqdm bar over epochs
    num_threads: int = 1       # torch threads during fit (restored after): BPR's ops are tiny, and
                               # 2 threads on a busy 2-core machine were 50x slower than 1


class BPR:
    """Matrix factorisation trained with the BPR pairwise loss and sampled negatives."""

    name = "bpr"
    user_repr = "learned user factor p_u of the train interactions (the history is not used)"

    def __init__(self, config: BPRConfig | None = None):
        self.config = config or BPRConfig()
        self.user_embeds: torch.Tensor | None = None   # (n_users, D)
        self.item_embeds: torch.Tensor | None = None   # (n_items, D)
        self.n_items = 0

    def fit(self, train_seqs: list[np.ndarray], n_items: int, on_epoch_end=None) -> dict:
        """Train on every (user, item) of ``train_seqs``.

        Args:
            train_seqs: per user u, its train item ids (order does not matter to BPR).
            n_items: catalogue size.
            on_epoch_end: optional ``callback(epoch, model)`` (e.g. a validation check).
        Returns:
            {"train_s": float, "loss_curve": [mean loss per epoch]}.
        """
        threads = torch.get_num_threads()
        torch.set_num_threads(self.config.num_threads)
        try:
            return self._fit(train_seqs, n_items, on_epoch_end)
        finally:
            torch.set_num_threads(threads)

    def _fit(self, train_seqs: list[np.ndarray], n_items: int, on_epoch_end) -> dict:
        cfg = self.config
        start = time.perf_counter()
        gen = torch.Generator().manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        n_users, self.n_items = len(train_seqs), n_items
        users = np.concatenate([np.full(len(s), u, np.int64) for u, s in enumerate(train_seqs)])
        items = np.concatenate([np.asarray(s, np.int64) for s in train_seqs])
        if not len(users):
            raise ValueError("BPR.fit: no train interactions")
        seen_keys = np.unique(users * n_items + items)          # sorted, for the negative check

        user_w = torch.nn.Parameter(torch.randn(n_users, cfg.dim, generator=gen) * 0.1)
        item_w = torch.nn.Parameter(torch.randn(n_items, cfg.dim, generator=gen) * 0.1)
        opt = torch.optim.Adam([user_w, item_w], lr=cfg.lr)
        curve = []
        for epoch in tqdm(range(cfg.epochs), desc="bpr", disable=not cfg.progress):
            order = rng.permutation(len(users))
            u_all, i_all = users[order], items[order]
            j_all = _sample_negatives(u_all, n_items, seen_keys, rng)
            total = 0.0
            for s in range(0, len(order), cfg.batch_size):
                u = torch.from_numpy(u_all[s:s + cfg.batch_size])
                i = torch.from_numpy(i_all[s:s + cfg.batch_size])
                j = torch.from_numpy(j_all[s:s + cfg.batch_size])
                pu, qi, qj = user_w[u], item_w[i], item_w[j]                  # (B, D) each
                diff = (pu * (qi - qj)).sum(-1)                               # (B,)
                l2 = (pu.pow(2) + qi.pow(2) + qj.pow(2)).sum(-1)
                loss = (-F.logsigmoid(diff) + cfg.reg * l2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(u)
            curve.append(total / len(order))
            self.user_embeds, self.item_embeds = user_w.detach(), item_w.detach()
            if on_epoch_end is not None:
                on_epoch_end(epoch, self)
        self.user_embeds, self.item_embeds = user_w.detach().clone(), item_w.detach().clone()
        return {"train_s": time.perf_counter() - start, "loss_curve": curve}

    def _check_fitted(self) -> None:
        if self.item_embeds is None:
            raise RuntimeError("BPR is not fitted; call fit(train_seqs, n_items) first")

    def _user_vectors(self, user_idx: np.ndarray, histories: list[np.ndarray] | None) -> torch.Tensor:
        """(B, D): the learned vector of known users; the mean history item vector of unknown ones."""
        user_idx = np.asarray(user_idx, dtype=np.int64)
        known = (user_idx >= 0) & (user_idx < len(self.user_embeds))
        out = torch.zeros(len(user_idx), self.item_embeds.shape[1])
        out[torch.from_numpy(known)] = self.user_embeds[torch.from_numpy(user_idx[known])]
        for b in np.flatnonzero(~known):
            hist = np.asarray(histories[b] if histories is not None else [], np.int64)
            if len(hist):
                out[b] = self.item_embeds[torch.from_numpy(hist)].mean(0)
        return out

    @torch.no_grad()
    def score(self, user_idx: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
        """(B, n_items) float32 dot products p_u . q_i (histories only used for unknown users)."""
        self._check_fitted()
        return (self._user_vectors(user_idx, histories) @ self.item_embeds.T).numpy().astype(np.float32)

    def item_embeddings(self) -> np.ndarray:
        """(n_items, D) float32 item vectors q_i."""
        self._check_fitted()
        return self.item_embeds.numpy().astype(np.float32)

    def user_embeddings(self, histories: list[np.ndarray]) -> np.ndarray:
        """(n_users, D) float32 learned user vectors p_u (histories ignored: BPR users are fixed)."""
        self._check_fitted()
        return self.user_embeds.numpy().astype(np.float32)

    def config_dict(self) -> dict:
        return asdict(self.config)


def _sample_negatives(users: np.ndarray, n_items: int, seen_keys: np.ndarray,
                      rng: np.random.Generator, max_rounds: int = 20) -> np.ndarray:
    """One uniform negative per entry of ``users``, resampled while it hits a seen (user, item).

    ``seen_keys`` are the sorted ``user * n_items + item`` of the train interactions. After
    ``max_rounds`` the rare leftovers (users who saw almost everything) keep their last draw.
    """
    neg = rng.integers(0, n_items, size=len(users))
    todo = np.arange(len(users))
    for _ in range(max_rounds):
        keys = users[todo] * n_items + neg[todo]
        pos = np.minimum(np.searchsorted(seen_keys, keys), len(seen_keys) - 1)
        todo = todo[seen_keys[pos] == keys]
        if not len(todo):
            break
        neg[todo] = rng.integers(0, n_items, size=len(todo))
    return neg
