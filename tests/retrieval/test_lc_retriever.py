"""The LangChain retriever returns catalogue movies as Documents carrying their ids."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever

from retrieval.index import ItemIndex
from retrieval.lc_retriever import ItemTextRetriever

VOCAB = ["space", "mars", "love", "paris", "crime", "mafia", "shark", "ocean"]


def keyword_encoder(texts):
    """Test helper: normalised keyword counts over VOCAB (plus a constant so no row is zero)."""
    rows = [[t.lower().count(w) for w in VOCAB] + [0.1] for t in texts]
    x = np.asarray(rows, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def items() -> pd.DataFrame:
    rows = [  # (movielens id, title, year, genres, text): made up for the test
        (101, "Red Planet Run", 2000.0, ["Sci-Fi", "Adventure"], "Astronauts fly through space to Mars."),
        (102, "Orbit", float("nan"), ["Sci-Fi"], "A lonely space station far out in space."),
        (103, "Paris in Spring", 2001.0, ["Comedy", "Romance"], "Love and coffee in Paris."),
        (104, "The Family", 1972.0, ["Crime", "Drama"], "A mafia family and its crime empire."),
        (105, "Deep Water", 1975.0, ["Horror"], "A shark hunts swimmers in the ocean."),
        (106, "Mars Needs Love", 2011.0, ["Comedy", "Sci-Fi"], "Love blossoms on Mars."),
    ]
    return pd.DataFrame({"item_id": range(6), "movielens_id": [r[0] for r in rows],
                         "title": [r[1] for r in rows], "year": [r[2] for r in rows],
                         "genres": [r[3] for r in rows], "text": [r[4] for r in rows]})


@pytest.fixture
def retriever(items) -> ItemTextRetriever:
    index = ItemIndex.from_vectors(keyword_encoder(items["text"].tolist()), items)
    return ItemTextRetriever(item_index=index, encoder=keyword_encoder, k=2)


def test_returns_documents_with_item_ids_and_metadata(retriever, items):
    assert isinstance(retriever, BaseRetriever)
    docs = retriever.invoke("space trip")
    assert len(docs) == 2 and all(isinstance(d, Document) for d in docs)
    assert [d.metadata["item_id"] for d in docs] == [1, 0]      # "space" twice, then once
    top = docs[0]
    assert top.page_content == items.text[1]
    assert top.metadata["movielens_id"] == 102 and top.metadata["title"] == "Orbit"
    assert top.metadata["year"] is None and top.metadata["genres"] == ["Sci-Fi"]
    assert docs[0].metadata["score"] > docs[1].metadata["score"]
    assert docs[1].metadata["year"] == 2000


def test_default_filters_apply(items):
    index = ItemIndex.from_vectors(keyword_encoder(items["text"].tolist()), items)
    r = ItemTextRetriever(item_index=index, encoder=keyword_encoder, k=3,
                          exclude_ids=frozenset({1}), exclude_genres=["comedy"])
    ids = [d.metadata["item_id"] for d in r.invoke("space mars")]
    assert ids[0] == 0 and 1 not in ids and 5 not in ids and len(ids) == 3


def test_per_call_overrides(retriever):
    docs = retriever.invoke("love on mars", k=1, year_min=2005)
    assert [d.metadata["item_id"] for d in docs] == [5]
    docs = retriever.invoke("love", include_genres=["romance"], k=4)
    assert [d.metadata["item_id"] for d in docs] == [2]          # the only romance
    with pytest.raises(TypeError, match="unknown"):
        retriever.invoke("love", colour="red")


def test_with_the_real_text_encoder(items):
    from retrieval.text_encoder import TextEncoder
    enc = TextEncoder()
    index = ItemIndex.from_vectors(enc(items["text"].tolist()), items)
    r = ItemTextRetriever(item_index=index, encoder=enc, k=3)
    assert r.invoke("a killer fish attacks a beach")[0].metadata["title"] == "Deep Water"
    assert r.invoke("gangsters and organised crime")[0].metadata["movielens_id"] == 104
