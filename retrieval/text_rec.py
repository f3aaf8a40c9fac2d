"""Content-based recommenders over item text embeddings: text-only and CF + text hybrid.

``TextRecommender`` scores items by cosine similarity between their text embedding and a user
profile: the recency-weighted mean of the text embeddings of the user's history (weight
``decay ** age``, age 0 = the latest item). ``HybridRecommender`` mixes a CF model's scores with
the text scores after standardising each per user: ``alpha * z(cf) + (1 - alpha) * z(text)``.
Both follow the common recommender interface (``fit``, ``score``, ``item_embeddings``,
``user_embeddings``) used by the offline benchmark.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class TextRecConfig:
    decay: float = 0.9       # recency weight per step back in the history
    max_history: int = 50    # only the latest items form the profile


class TextRecommender:
    name = "text"

    def __init__(self, item_text_embeds: np.ndarray, config: TextRecConfig | None = None):
        self.config = config or TextRecConfig()
        emb = np.asarray(item_text_embeds, dtype=np.float32)
        self.item_embeds = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)

    def fit(self, train_seqs, n_items: int) -> dict:
        if n_items != len(self.item_embeds):
            raise ValueError(f"{n_items} items but {len(self.item_embeds)} text embeddings")
        return {"train_s": 0.0, "loss_curve": []}

    def profile(self, history: np.ndarray) -> np.ndarray:
        """(D,) normalised recency-weighted mean of the history's text embeddings."""
        h = np.asarray(history, dtype=np.int64)[-self.config.max_history:]
        if len(h) == 0:
            return np.zeros(self.item_embeds.shape[1], np.float32)
        w = self.config.decay ** np.arange(len(h) - 1, -1, -1, dtype=np.float32)
        p = (w[:, None] * self.item_embeds[h]).sum(0)
        return p / max(float(np.linalg.norm(p)), 1e-12)

    def user_embeddings(self, histories) -> np.ndarray:
        return np.stack([self.profile(h) for h in histories])

    def item_embeddings(self) -> np.ndarray:
        return self.item_embeds

    def score(self, user_idx, histories) -> np.ndarray:
        return self.user_embeddings(histories) @ self.item_embeds.T


def _zscore(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    mu = scores.mean(axis=1, keepdims=True)
    sd = scores.std(axis=1, keepdims=True)
    return (scores - mu) / np.maximum(sd, 1e-9)


@dataclass
class HybridConfig:
    alpha: float = 0.7       # weight of the CF model's standardised scores


class HybridRecommender:
    name = "hybrid"

    def __init__(self, cf_model, text_model: TextRecommender, config: HybridConfig | None = None):
        self.cf, self.text = cf_model, text_model
        self.config = config or HybridConfig()

    def fit(self, train_seqs, n_items: int) -> dict:
        """Both parts are expected to be fitted already; the hybrid itself has no parameters."""
        return {"train_s": 0.0, "loss_curve": []}

    def score(self, user_idx, histories) -> np.ndarray:
        a = self.config.alpha
        return a * _zscore(self.cf.score(user_idx, histories)) + \
            (1 - a) * _zscore(self.text.score(user_idx, histories))

    def item_embeddings(self) -> np.ndarray:
        return np.concatenate([self.cf.item_embeddings(), self.text.item_embeddings()], axis=1)

    def user_embeddings(self, histories) -> np.ndarray:
        return np.concatenate([self.cf.user_embeddings(histories), self.text.user_embeddings(histories)], axis=1)

