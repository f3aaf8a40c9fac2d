"""Ranking metrics for the offline next-item protocol: full ranking, ties against the model.

A target's rank is the number of other candidate items scoring at least as high as it (0 = first),
so a model that gives many items the same score gains nothing from the tie. Excluded items (the
user's history) are never candidates.
"""
from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

KS = (5, 10, 20)


def target_ranks(scores: np.ndarray, targets: np.ndarray, exclude: list[np.ndarray]) -> np.ndarray:
    """0-based rank of each target among the non-excluded items, ties counted against the model.

    Args:
        scores: (B, N) item scores, higher is better; NaN counts as the worst score.
        targets: (B,) target item ids.
        exclude: B arrays of item ids that are not candidates (the target is never excluded).
    Returns:
        (B,) int64 ranks.
    """
    scores = np.where(np.isnan(scores), -np.inf, scores)
    candidate = np.ones(scores.shape, dtype=bool)
    for b, ex in enumerate(exclude):
        candidate[b, ex] = False
    rows = np.arange(len(targets))
    candidate[rows, targets] = False
    target_scores = scores[rows, targets][:, None]
    return ((scores >= target_scores) & candidate).sum(axis=1).astype(np.int64)


def rank_metrics(ranks: np.ndarray, ks=KS) -> dict[str, float]:
    """HR@k and NDCG@k (one relevant item) from 0-based ranks."""
    ranks = np.asarray(ranks)
    out = {}
    for k in ks:
        out[f"hr@{k}"] = float((ranks < k).mean())
        out[f"ndcg@{k}"] = float(ndcg_at(ranks, k).mean())
    return out


def evaluate(model, split, phase: str = "valid", ks=KS, batch_size: int = 256,
             return_ranks: bool = False, progress: bool = False) -> dict:
    """Full-ranking evaluation of ``model.score(user_idx, histories)`` on a split.

    ``phase="valid"`` predicts the validation item from the train history; ``"test"`` the test item
    from train + validation. Returns the metrics, ``n_users`` and, if asked, the per-user ``ranks``.
    """
    targets_all = {"valid": split.valid, "test": split.test}[phase]
    users = np.flatnonzero(targets_all >= 0)
    ranks = []
    batches = range(0, len(users), batch_size)
    for start in tqdm(batches, desc=f"eval {phase}", disable=not progress, leave=False):
        idx = users[start:start + batch_size]
        histories = [split.history(int(u), phase) for u in idx]
        scores = np.asarray(model.score(idx, histories), dtype=np.float64)
        ranks.append(target_ranks(scores, targets_all[idx], histories))
    ranks = np.concatenate(ranks) if ranks else np.zeros(0, np.int64)
    out = rank_metrics(ranks, ks)
    out["n_users"] = int(len(users))
    if return_ranks:
        out["ranks"] = ranks
    return out


def bootstrap_ci(values: np.ndarray, n_boot: int = 1000, seed: int = 0) -> list[float]:
    """Percentile 95% interval of the mean, resampling users (or samples)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (n_boot, len(values)))].mean(1)
    return [round(float(np.percentile(means, 2.5)), 4), round(float(np.percentile(means, 97.5)), 4)]


def ndcg_at(ranks: np.ndarray, k: int = 10) -> np.ndarray:
    """Per-user NDCG@k of one relevant item at 0-based ``ranks``."""
    ranks = np.asarray(ranks)
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)
