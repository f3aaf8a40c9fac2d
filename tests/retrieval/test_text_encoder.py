"""Text embeddings: the real bundled all-MiniLM-L6-v2 (offline), and the on-disk cache."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from retrieval.text_encoder import TextEncoder, bundled_model_dir, encode_texts, item_text_embeddings


class CountingEncoder:
    """Test helper: deterministic vectors from a hash of each text; records what it encoded."""

    def __init__(self, name="fake-encoder", dim=8):
        self.name, self.dim, self.calls = name, dim, []

    def __call__(self, texts):
        self.calls.append(list(texts))
        seeds = [int(hashlib.md5((self.name + t).encode()).hexdigest()[:8], 16) for t in texts]
        return np.stack([np.random.default_rng(s).standard_normal(self.dim) for s in seeds]).astype(np.float32) \
            if texts else np.zeros((0, self.dim), np.float32)

    @property
    def n_encoded(self):
        return sum(len(c) for c in self.calls)


TEXTS = ["The Matrix. Sci-Fi.", "Alien. Horror.", "Amelie. Comedy, Romance.", "Heat. Crime."]


def test_cache_reuses_rows_and_reencodes_only_changed_texts(tmp_path):
    enc = CountingEncoder()
    first = item_text_embeddings(TEXTS, tmp_path, encoder=enc)
    assert first.shape == (4, 8) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, rtol=1e-5)
    assert enc.n_encoded == 4

    again = item_text_embeddings(TEXTS, tmp_path, encoder=enc)
    assert enc.n_encoded == 4                                   # nothing re-encoded
    np.testing.assert_array_equal(again, first)

    changed = list(TEXTS)
    changed[2] = "Amelie. Comedy, Romance. Paris."
    out = item_text_embeddings(changed, tmp_path, encoder=enc)
    assert enc.calls[-1] == [changed[2]]                        # only the changed text
    np.testing.assert_array_equal(np.delete(out, 2, axis=0), np.delete(first, 2, axis=0))
    assert not np.allclose(out[2], first[2])
    expected = enc([changed[2]])[0]
    np.testing.assert_allclose(out[2], expected / np.linalg.norm(expected), rtol=1e-5)

    meta = json.loads((tmp_path / "item_text.json").read_text())
    assert meta["model"] == "fake-encoder" and meta["count"] == 4 and meta["dim"] == 8


def test_cache_is_invalidated_by_another_model(tmp_path):
    item_text_embeddings(TEXTS, tmp_path, encoder=CountingEncoder("model-a"))
    other = CountingEncoder("model-b")
    out = item_text_embeddings(TEXTS, tmp_path, encoder=other)
    assert other.n_encoded == 4
    direct = other(TEXTS)
    np.testing.assert_allclose(out, direct / np.linalg.norm(direct, axis=1, keepdims=True), rtol=1e-5)


def test_cache_follows_reordered_and_added_texts(tmp_path):
    enc = CountingEncoder()
    first = item_text_embeddings(TEXTS, tmp_path, encoder=enc)
    out = item_text_embeddings(TEXTS[::-1] + ["Jaws. Horror."], tmp_path, encoder=enc)
    assert enc.calls[-1] == ["Jaws. Horror."]
    np.testing.assert_array_equal(out[:4], first[::-1])


def test_cache_needs_a_model_name(tmp_path):
    with pytest.raises(ValueError, match="model_name"):
        item_text_embeddings(TEXTS, tmp_path, encoder=lambda texts: np.ones((len(texts), 2)))
    out = item_text_embeddings(TEXTS, tmp_path, encoder=lambda texts: np.ones((len(texts), 2)),
                               model_name="ones")
    np.testing.assert_allclose(out, np.full((4, 2), 2 ** -0.5), rtol=1e-6)


def test_bundled_model_folder_is_found():
    assert (bundled_model_dir() / "modules.json").is_file()


def test_real_minilm_encodes_offline_and_ranks_by_meaning():
    emb = encode_texts(["a space adventure", "astronauts travel to Mars", "a romantic comedy in Paris"],
                       batch_size=8)
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.05
    enc = TextEncoder()
    assert enc.dim == 384 and enc.name == "sentence-transformers/all-MiniLM-L6-v2"
    assert enc([]).shape == (0, 384)
