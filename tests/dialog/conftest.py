"""Fixtures for the dialog tests: resources over the 20-movie synthetic data, built in code once per
session with a word-hashing text encoder instead of MiniLM (so they take well under a second and
depend on no weights), and a smoke SASRec trained on the fixture ratings."""
from __future__ import annotations

import re
import zlib

import numpy as np
import pytest

from tests.conftest import write_latest_small

DIM = 64


def hashing_encoder(texts):
    """Bag of lower-cased words hashed into DIM dims, L2-normalised: similarity = shared words."""
    out = np.zeros((len(texts), DIM), np.float32)
    for r, t in enumerate(texts):
        for w in re.findall(r"[a-z0-9]+", str(t).lower()):
            out[r, zlib.crc32(w.encode()) % DIM] += 1.0
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def make_resources(root):
    from retrieval.catalog import build_catalog
    from retrieval.data import load_dataset
    from retrieval.index import ItemIndex
    from retrieval.resources import CONFIGS, Resources
    from retrieval.sasrec import SASRec
    from retrieval.splits import last_positive_holdout
    from retrieval.titles import TitleIndex

    raw = load_dataset("ml-latest-small", root)
    catalog = build_catalog(raw)
    split = last_positive_holdout(raw, catalog)
    text_embeds = hashing_encoder(catalog.items["text"].tolist())
    cf = SASRec(CONFIGS["smoke"])
    cf.fit(split.train, split.n_items)
    res = Resources("ml-latest-small", catalog, TitleIndex(catalog, split.popularity()), split, split.popularity(),
                    text_embeds, ItemIndex.from_vectors(text_embeds, catalog.items), cf,
                    ItemIndex.from_vectors(cf.item_embeddings(), catalog.items))
    res._encoder = hashing_encoder
    return res


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("dialog_data")
    write_latest_small(root)
    return root


@pytest.fixture(scope="session")
def resources(data_dir):
    return make_resources(data_dir)


@pytest.fixture
def manager(resources):
    from dialog.manager import build_manager
    from dialog.ranker import RankerWeights
    return build_manager(resources, weights=RankerWeights.prior())


@pytest.fixture(scope="session")
def tiny_chat():
    from dialog.llm import LocalChatModel
    from tests.tiny_models import tiny_lm
    model, tok = tiny_lm()
    return LocalChatModel.from_hf(model, tok, spec="tiny", max_new_tokens=12)
