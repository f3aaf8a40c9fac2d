"""The conversational ranker: orders retrieval's candidates for this person and this conversation.

Each candidate gets a feature vector (``FEATURES``): the CF model's score for the session
(standardised over the catalogue), text similarity to the request, similarity to the liked items
(text and CF spaces), similarity to rejected items, the ILM's score (0 when no ILM is loaded),
a popularity prior, how well the item matches the constraints (genres asked for, moods,
audience), and what people recommend in real conversations (``retrieval.comention``): how often
the movie was recommended at all, after the liked movies / the other movies named, and named in
the same conversations as them; whether a director or actor asked for is credited on it
(``retrieval.people``); a recency prior (release year); the score of the UniSRec-style text item
model (``retrieval.unisrec``) for the session, 0 when the artefacts do not hold one. The score
is ``features @ weights``.

The weights are fitted, not hand-set (``fit_weights``): a conditional logit (softmax over one
turn's candidates, the target as the label; L2) on candidate sets collected from simulated
conversations of *training* users (``dialog.eval.fit_ranker``). Test users never contribute.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FEATURES = ("cf", "text", "liked_text", "liked_cf", "rejected_text", "ilm", "popularity",
            "genre_match", "mood_match", "audience_match", "in_text_top", "in_cf_top", "from_liked",
            "talked_about", "after_liked", "after_mentioned", "together", "people_match", "recency", "unisrec")
WEIGHTS_DIR = Path(__file__).resolve().parent / "ranker_weights"


@dataclass
class RankerWeights:
    weights: dict[str, float]
    meta: dict = field(default_factory=dict)   # how they were fitted: users, data set, seed, loss

    def vector(self) -> np.ndarray:
        return np.array([self.weights.get(f, 0.0) for f in FEATURES], dtype=np.float64)

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps({"features": list(FEATURES), "weights": self.weights,
                                          "meta": self.meta}, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> RankerWeights:
        d = json.loads(Path(path).read_text())
        unknown = set(d["weights"]) - set(FEATURES)
        if unknown:
            raise ValueError(f"{path}: unknown ranker features {sorted(unknown)}; known: {FEATURES}")
        return cls({k: float(v) for k, v in d["weights"].items()}, d.get("meta", {}))

    @classmethod
    def prior(cls) -> RankerWeights:
        """Equal weights on the positive signals: only the starting point of the first fitting
        round (``dialog.eval.fit_ranker``), never the shipped ranker."""
        w = {f: 1.0 for f in FEATURES}
        w["rejected_text"] = -1.0
        return cls(w, {"fitted": False, "note": "prior for the first fitting round"})


def default_weights_path(dataset: str, ilm: bool = False) -> Path:
    """The shipped weights: ``<dataset>.json``, or ``<dataset>_ilm.json`` for a ranker that has the
    dialog ILM's score (fitted with it; the "ilm" feature is 0 in the other)."""
    return WEIGHTS_DIR / f"{dataset}{'_ilm' if ilm else ''}.json"


class Ranker:
    """``scores = features @ w``; ``rank`` returns the order and each feature's contribution."""

    def __init__(self, weights: RankerWeights):
        self.weights = weights
        self.w = weights.vector()

    def score(self, feats: np.ndarray) -> np.ndarray:
        """(C, F) features -> (C,) scores."""
        return feats @ self.w

    def rank(self, item_ids: np.ndarray, feats: np.ndarray, k: int | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ordered ids, their scores, their (C, F) weighted parts), best first; ties by item id."""
        scores = self.score(feats)
        order = np.lexsort((item_ids, -scores))
        if k is not None:
            order = order[:k]
        return item_ids[order], scores[order], feats[order] * self.w


def fit_weights(groups: list[tuple[np.ndarray, int]], l2: float = 0.01, seed: int = 0) -> tuple[np.ndarray, dict]:
    """Fit a conditional logit: for each group (C, F) features and the target's row, maximise
    log softmax(features @ w)[target] - l2 * |w|^2.

    Returns:
        (F,) weights and a dict with the loss and the training groups' top-5 hit rate.
    """
    from scipy.optimize import minimize

    if not groups:
        raise ValueError("no candidate sets with the target in them to fit on")
    n_feat = groups[0][0].shape[1]
    # Standardise for the optimiser; the returned weights act on raw features.
    allx = np.concatenate([x for x, _ in groups])
    mu, sd = allx.mean(0), np.maximum(allx.std(0), 1e-6)
    mu[:] = 0.0       # keep raw zero = "no signal" meaning; only rescale
    gs = [((x - mu) / sd, t) for x, t in groups]

    def loss_grad(w):
        total, grad = 0.0, np.zeros_like(w)
        for x, t in gs:
            s = x @ w
            s = s - s.max()
            p = np.exp(s)
            p /= p.sum()
            total -= np.log(p[t] + 1e-12)
            grad -= x[t] - p @ x
        total = total / len(gs) + l2 * float(w @ w)
        grad = grad / len(gs) + 2 * l2 * w
        return total, grad

    rng = np.random.default_rng(seed)
    res = minimize(loss_grad, rng.normal(0, 0.01, n_feat), jac=True, method="L-BFGS-B",
                   options={"maxiter": 500})
    w = res.x / sd
    constant = allx.std(0) < 1e-9
    w[constant] = 0.0        # a feature that never varied (e.g. "ilm" before an ILM is loaded) gets no weight
    hits = [int((x @ w > x[t] @ w).sum() < 5) for x, t in groups]
    return w, {"loss": float(res.fun), "train_hit@5": float(np.mean(hits)), "groups": len(groups),
               "converged": bool(res.success), "constant_features": [int(j) for j in np.flatnonzero(constant)]}
