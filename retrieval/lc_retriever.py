"""A LangChain retriever over the item text index: query text in, catalogue movies out as
``Document``s (page_content = the item's text, metadata = ids, title, year, genres, score).

The filters set on the retriever apply to every query; ``invoke(query, k=..., year_min=...)``
overrides them for one call.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from retrieval.index import ItemIndex

FILTER_KEYS = ("exclude_ids", "include_genres", "exclude_genres", "year_min", "year_max",
               "require_all_genres")


class ItemTextRetriever(BaseRetriever):
    """Semantic search of the catalogue by text.

    Fields:
        item_index: an ``ItemIndex`` built over the items' text embeddings.
        encoder: ``list[str] -> (n, d)`` array, the same model that embedded the items
            (e.g. ``retrieval.text_encoder.TextEncoder()``).
        k: documents per query.
        exclude_ids, include_genres, exclude_genres, year_min, year_max, require_all_genres:
            default filters (see ``ItemIndex.allowed_mask``).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    item_index: ItemIndex
    encoder: Callable[[list[str]], Any]
    k: int = 5
    exclude_ids: frozenset[int] = Field(default_factory=frozenset)
    include_genres: list[str] | None = None
    exclude_genres: list[str] | None = None
    year_min: float | None = None
    year_max: float | None = None
    require_all_genres: bool = False

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                **overrides: Any) -> list[Document]:
        unknown = set(overrides) - set(FILTER_KEYS) - {"k"}
        if unknown:
            raise TypeError(f"unknown retriever arguments: {sorted(unknown)}")
        filters = {key: getattr(self, key) for key in FILTER_KEYS}
        filters.update({key: v for key, v in overrides.items() if key in FILTER_KEYS})
        k = int(overrides.get("k", self.k))
        query_vec = np.asarray(self.encoder([query]), dtype=np.float32).reshape(-1)
        hits = self.item_index.search(query_vec, k, **filters)
        return [self._document(item_id, score) for item_id, score in hits]

    def _document(self, item_id: int, score: float) -> Document:
        row = self.item_index.items.iloc[item_id]
        year = row.get("year")
        year = None if year is None or (isinstance(year, float) and math.isnan(year)) else int(year)
        text = row.get("text")
        if not isinstance(text, str) or not text:
            text = str(row.get("title", ""))
        movielens_id = row.get("movielens_id")
        return Document(page_content=text, metadata={
            "item_id": int(item_id),
            "movielens_id": None if movielens_id is None else int(movielens_id),
            "title": str(row.get("title", "")),
            "year": year,
            "genres": list(row.get("genres", []) or []),
            "score": float(score),
        })
