"""Save and load what a collaborative-filtering model learned: item and user embeddings plus meta.

The hand-off from the CF recommenders (``pop.py``, ``bpr.py``, ``sasrec.py``) to the Q-Former
(``ilm/``), which cross-attends to these vectors (DESIGN.md).

On-disk format, for a model saved under ``name`` in directory ``dir``:

``<dir>/<name>.npz`` (``numpy.savez``, uncompressed)
    ``item_embeds``: (n_items, dim) float32; row i is the catalogue item with ``item_id`` i.
    ``user_embeds``: (n_users, dim) float32, present only if the model has user vectors; row u is
    the dense user index u of the split (``Split.user_ids[u]`` is its MovieLens user id).

``<dir>/<name>.json`` (UTF-8, indented) with at least these keys:
    ``model``: "pop" | "bpr" | "sasrec"; ``config``: the model's config dataclass as a dict;
    ``dataset``: e.g. "ml-100k"; ``n_items``, ``n_users`` (0 when there are no user vectors), ``dim``;
    ``user_repr``: one sentence on what a user vector means, e.g. for SASRec "final hidden state
    over the train+valid history", for BPR "learned user factor p_u";
    ``score``: how a model score relates to the vectors (e.g. "dot(user, item)");
    ``format_version``: 1. Any further keys (split name, metrics) are kept as given.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1
REQUIRED_META = ("model", "config", "dataset", "user_repr")


def save_embeddings(path_dir, name: str, item_embeds: np.ndarray, user_embeds: np.ndarray | None,
                    meta: dict) -> tuple[Path, Path]:
    """Write ``<path_dir>/<name>.npz`` and ``<path_dir>/<name>.json``.

    Args:
        path_dir: output directory (created if missing).
        name: file stem, e.g. "sasrec-ml-100k".
        item_embeds: (n_items, dim) array, stored as float32.
        user_embeds: (n_users, dim) array with the same dim, or None.
        meta: at least ``model``, ``config``, ``dataset``, ``user_repr``; ``n_items``, ``n_users``,
            ``dim`` and ``format_version`` are filled in from the arrays.
    Returns:
        (npz path, json path).
    """
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ValueError(f"save_embeddings: meta lacks {missing} (required: {list(REQUIRED_META)})")
    item_embeds = np.ascontiguousarray(item_embeds, dtype=np.float32)
    if item_embeds.ndim != 2:
        raise ValueError(f"item_embeds must be (n_items, dim), got shape {item_embeds.shape}")
    arrays = {"item_embeds": item_embeds}
    if user_embeds is not None:
        user_embeds = np.ascontiguousarray(user_embeds, dtype=np.float32)
        if user_embeds.ndim != 2 or user_embeds.shape[1] != item_embeds.shape[1]:
            raise ValueError(f"user_embeds must be (n_users, {item_embeds.shape[1]}), got {user_embeds.shape}")
        arrays["user_embeds"] = user_embeds
    meta = dict(meta, n_items=int(item_embeds.shape[0]), dim=int(item_embeds.shape[1]),
                n_users=int(user_embeds.shape[0]) if user_embeds is not None else 0,
                format_version=FORMAT_VERSION)
    meta.setdefault("score", "dot(user, item)")
    out = Path(path_dir)
    out.mkdir(parents=True, exist_ok=True)
    npz_path, json_path = out / f"{name}.npz", out / f"{name}.json"
    np.savez(npz_path, **arrays)
    json_path.write_text(json.dumps(meta, indent=2, sort_keys=True, default=_jsonable) + "\n", encoding="utf-8")
    return npz_path, json_path


def load_embeddings(path_dir, name: str) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """Read what ``save_embeddings`` wrote.

    Returns:
        item_embeds (n_items, dim) float32, user_embeds (n_users, dim) float32 or None, meta dict.
    """
    npz_path, json_path = Path(path_dir) / f"{name}.npz", Path(path_dir) / f"{name}.json"
    for p in (npz_path, json_path):
        if not p.is_file():
            raise FileNotFoundError(f"no saved embeddings {p}; write them with save_embeddings(dir, {name!r}, ...)")
    meta = json.loads(json_path.read_text(encoding="utf-8"))
    with np.load(npz_path, allow_pickle=False) as data:
        item_embeds = data["item_embeds"]
        user_embeds = data["user_embeds"] if "user_embeds" in data.files else None
    if item_embeds.shape != (meta["n_items"], meta["dim"]):
        raise ValueError(f"{npz_path}: item_embeds shape {item_embeds.shape} disagrees with "
                         f"{json_path.name} (n_items={meta['n_items']}, dim={meta['dim']})")
    return item_embeds, user_embeds, meta


def _jsonable(value):
    """json.dumps fallback for numpy scalars and paths in configs."""
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
