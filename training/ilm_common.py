"""What every ILM training and evaluation step starts from: data, split, CF model, text embeddings.

``prepare(dataset, work_dir)`` loads the data set, builds the catalogue and the leave-one-out split
(the offline benchmark's protocol), trains SASRec on the training part once and caches it in
``work_dir`` (its weights and config; reused when the config matches), and encodes the item texts
with MiniLM (cached). The Q-Former's CF side is SASRec's item embedding table, trained on the
training split only, so nothing of the validation or test items leaks into stage 1 or 2.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from retrieval.catalog import Catalog, build_catalog
from retrieval.data import load_dataset
from retrieval.sasrec import SASRec, SASRecConfig
from retrieval.splits import Split, leave_one_out
from retrieval.text_encoder import item_text_embeddings


@dataclass
class Prepared:
    dataset: str
    catalog: Catalog
    split: Split
    sasrec: SASRec
    text_embeds: np.ndarray          # (n_items, 384) MiniLM embeddings of the item texts
    sasrec_train_s: float

    def item_rows(self) -> list[dict]:
        """Catalogue rows as dicts (title, year, genres, description), indexed by item id."""
        cols = ["title", "year", "genres", "description"]
        return self.catalog.items[cols].to_dict("records")


def prepare(dataset: str, work_dir: Path, sasrec_cfg: SASRecConfig | None = None, data_dir=None,
            log=print) -> Prepared:
    work_dir = Path(work_dir) / dataset
    work_dir.mkdir(parents=True, exist_ok=True)
    raw = load_dataset(dataset, data_dir)
    catalog = build_catalog(raw)
    split = leave_one_out(raw, catalog)
    cfg = sasrec_cfg or SASRecConfig()
    model, train_s = _sasrec(split, cfg, work_dir, log)
    text = item_text_embeddings(catalog.items["text"].tolist(), work_dir / "text_cache")
    return Prepared(dataset, catalog, split, model, text, train_s)


def _sasrec(split: Split, cfg: SASRecConfig, work_dir: Path, log) -> tuple[SASRec, float]:
    """SASRec fitted on split.train, cached as ``sasrec.pt`` (``SASRec.save``) + ``sasrec.json``
    (the cache key: config, n_items, train size; and the training time)."""
    weights, meta_path = work_dir / "sasrec.pt", work_dir / "sasrec.json"
    wanted = {"config": asdict(cfg), "n_items": split.n_items,
              "n_train": int(sum(len(t) for t in split.train))}
    if weights.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if {k: meta.get(k) for k in wanted} == wanted:
            try:
                model = SASRec.load(weights, device=cfg.device)
            except ValueError as e:                  # e.g. a cache written before SASRec.save existed
                log(f"SASRec: not reusing the cache ({e})")
            else:
                log(f"SASRec: reused {weights} (trained in {meta['train_s']:.0f}s)")
                return model, meta["train_s"]
    log("SASRec: training on the training split ...")
    model = SASRec(cfg)
    info = model.fit(split.train, split.n_items)
    model.save(weights)
    meta_path.write_text(json.dumps({**wanted, "train_s": info["train_s"]}, indent=2))
    return model, info["train_s"]
