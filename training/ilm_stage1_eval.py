"""Stage-1 measures: item<->text retrieval among items whose texts were never trained on, overall and
by popularity bucket, and the linear reference point (ridge regression from CF to text embeddings).

Protocol: for a set of items, each item's CF side is scored against every item's text side of the
same set (cosine; the best query for a Q-Former); Recall@k is the share of items whose own text is
among the k best (ties count against the model). A subset (items with at least 5 training ratings,
or a bucket) is measured among its own items, so its chance level is k / its size.
"""
from __future__ import annotations

import numpy as np
import torch

from ilm.losses import itc_similarity

BUCKETS = (("lt5", 0, 5), ("5to50", 5, 51), ("gt50", 51, None))  # training ratings: < 5, 5-50, > 50


def recall_at(sim: torch.Tensor, ks=(1, 10)) -> dict:
    """Item->text and text->item Recall@k of a square similarity (row i's match is column i)."""
    out = {}
    for name, s in (("item2text", sim), ("text2item", sim.t())):
        rank = (s > s.diag()[:, None]).sum(dim=1) + ((s == s.diag()[:, None]).sum(dim=1) - 1)
        for k in ks:
            out[f"{name}_recall@{k}"] = round(float((rank < k).float().mean()), 4)
    return out


def heldout_metrics(item_feats: torch.Tensor, text_feats: torch.Tensor, counts: np.ndarray,
                    items: np.ndarray, ks=(1, 10)) -> dict:
    """Recall among ``items`` overall, among those with >= 5 training ratings, and per bucket.

    Args:
        item_feats: (n, Q, D) CF-side features of ``items`` (Q = 1 for a single vector).
        text_feats: (n, D) text-side features of the same items.
        counts: training ratings per catalogue item.
    """
    sim = itc_similarity(item_feats, text_feats)
    c = np.asarray(counts)[np.asarray(items)]
    out = {"n_items": int(len(items)), **recall_at(sim, ks),
           "chance_recall@10": round(min(1.0, 10 / max(len(items), 1)), 4)}
    subsets = {"min5": c >= 5, **{name: (c >= lo) & (c < hi if hi else True) for name, lo, hi in BUCKETS}}
    for name, mask in subsets.items():
        idx = torch.from_numpy(np.flatnonzero(mask))
        if len(idx) < 2:
            out[name] = {"n_items": int(len(idx))}
            continue
        sub = recall_at(sim[idx][:, idx], ks=(10,))
        out[name] = {"n_items": int(len(idx)), "recall@10": sub["item2text_recall@10"],
                     "text2item_recall@10": sub["text2item_recall@10"],
                     "chance_recall@10": round(min(1.0, 10 / len(idx)), 4)}
    out["recall@10"] = out["item2text_recall@10"]
    out["recall@10_min5"] = out["min5"].get("recall@10")
    return out


def ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Ridge regression with an unpenalised intercept: (W (d_x, d_y), b (d_y,))."""
    xm, ym = x.mean(0), y.mean(0)
    xc = x - xm
    w = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y - ym))
    return w, ym - xm @ w


def ridge_probe(cf: np.ndarray, targets: np.ndarray, train_items: np.ndarray, val_items: np.ndarray,
                test_items: np.ndarray, counts: np.ndarray,
                alphas=(0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)) -> dict:
    """Ridge from CF embeddings to the text embeddings; alpha chosen on the validation items'
    item->text Recall@10, measured once on ``test_items``."""
    x = cf.astype(np.float64)
    y = targets.astype(np.float64)

    def feats(w, b, items):
        pred = torch.from_numpy((x[items] @ w + b).astype(np.float32))[:, None]
        return pred, torch.from_numpy(y[items].astype(np.float32))

    val = {}
    for a in alphas:
        w, b = ridge_fit(x[train_items], y[train_items], a)
        val[a] = recall_at(itc_similarity(*feats(w, b, val_items)), ks=(10,))["item2text_recall@10"]
    best = max(alphas, key=lambda a: (val[a], -a))
    w, b = ridge_fit(x[train_items], y[train_items], best)
    return {"alpha": best, "val_recall@10": val[best],
            **heldout_metrics(*feats(w, b, test_items), counts, test_items)}
