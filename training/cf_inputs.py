"""The CF embeddings the Q-Former reads, by name: one model's item table or several side by side.

  sasrec  the product's sequential model (``retrieval/sasrec.py``), as trained by ``prepare``
  bpr     BPR matrix factorisation (``retrieval/bpr.py``) on the same training split
  cooc    the PPMI co-occurrence factorisation (``retrieval/cooc.py``): structure for rare items
  a+b     the named tables side by side, each scaled to unit mean row norm first

BPR and cooc are fitted on the training split only and cached in the work folder (keyed by the
split's size and their config); every table is (n_items, d) float32.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from retrieval.bpr import BPR, BPRConfig
from retrieval.cooc import CoocConfig, CoocFactors

CF_SOURCES = ("sasrec", "bpr", "cooc")


def parse_cf_input(name: str) -> list[str]:
    parts = [p.strip() for p in name.split("+") if p.strip()]
    bad = [p for p in parts if p not in CF_SOURCES]
    if not parts or bad:
        raise ValueError(f"CF input {name!r}: each part must be one of {CF_SOURCES} (joined by '+')")
    return parts


def cf_embeddings(name: str, prep, work_dir: Path | None = None, seed: int = 0) -> np.ndarray:
    """The (n_items, d) CF table ``name`` for the prepared data set ``prep`` (training.ilm_common)."""
    tables = [_one(part, prep, work_dir, seed) for part in parse_cf_input(name)]
    if len(tables) == 1:
        return tables[0]
    scaled = [t / max(float(np.linalg.norm(t, axis=1).mean()), 1e-12) for t in tables]
    return np.concatenate(scaled, axis=1).astype(np.float32)


def _one(part: str, prep, work_dir: Path | None, seed: int) -> np.ndarray:
    if part == "sasrec":
        return prep.sasrec.item_embeddings()
    train, n_items = prep.split.train, prep.split.n_items
    if part == "bpr":
        cfg = BPRConfig(seed=seed)
        model = BPR(cfg)
    else:
        cfg = CoocConfig()
        model = CoocFactors(cfg)
    key = {"source": part, "config": asdict(cfg), "n_items": int(n_items),
           "n_train": int(sum(len(t) for t in train))}
    cache = None if work_dir is None else Path(work_dir) / f"cf_{part}.npy"
    if cache is not None and cache.is_file() and cache.with_suffix(".json").is_file():
        if json.loads(cache.with_suffix(".json").read_text()) == key:
            return np.load(cache)
    model.fit(train, n_items)
    emb = np.asarray(model.item_embeddings(), dtype=np.float32)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, emb)
        cache.with_suffix(".json").write_text(json.dumps(key))
    return emb
