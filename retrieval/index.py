"""faiss indexes over item vectors: build, save/load, search, filtered search over a catalogue
(its latency/recall benchmarks are in ``retrieval/eval/ann.py``).

Scores are inner products (cosine for L2-normalised vectors). Three kinds:
  flat  IndexFlatIP, exact; the default, and fast enough for a catalogue (~10k items).
  hnsw  IndexHNSWFlat(METRIC_INNER_PRODUCT), graph-based approximate search.
  ivf   IndexIVFFlat(METRIC_INNER_PRODUCT), inverted lists over k-means cells.
Index ids are row positions of the vectors, i.e. the catalogue's ``item_id``.

``ItemIndex`` adds the catalogue's metadata for filtered search (seen items, genres, year).
faiss filters nothing by metadata itself, so the search asks for more neighbours (k*4, k*16, ...)
until k survive the filters; past the whole index it scores the allowed items exactly, so k
results come back whenever k items pass the filters, for every index kind.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import faiss
import numpy as np
import pandas as pd

KINDS = ("flat", "hnsw", "ivf")
GROWTH = 4          # filtered search multiplies the number of neighbours asked for by this


def _as_matrix(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"expected (N, d) vectors, got shape {x.shape}")
    return x


def build_index(vectors: np.ndarray, kind: str = "flat", *, hnsw_m: int = 32,
                ef_construction: int = 80, ef_search: int = 128, nlist: int | None = None,
                nprobe: int = 16, seed: int = 0) -> faiss.Index:
    """Build an inner-product index over ``vectors`` (ids 0..N-1 = row positions).

    Args:
        vectors: (N, d) float32; normalise them first for cosine similarity.
        kind: "flat" (exact), "hnsw" or "ivf".
        hnsw_m, ef_construction, ef_search: HNSW graph degree and beam widths.
        nlist, nprobe: IVF cell count (default ~4*sqrt(N), at most N/39) and cells visited.
    Returns:
        a faiss index holding all N vectors.
    """
    x = _as_matrix(vectors)
    n, d = x.shape
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = ef_search
    elif kind == "ivf":
        nlist = nlist or int(np.clip(4 * np.sqrt(n), 1, max(1, n // 39)))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        # k-means on at most 256 points per cell: more adds build time, not recall.
        train = x if n <= 256 * nlist else x[np.random.default_rng(seed).choice(n, 256 * nlist, replace=False)]
        index.train(train)
        index.nprobe = min(nprobe, nlist)
    else:
        raise ValueError(f"unknown index kind {kind!r}; expected one of {KINDS}")
    index.add(x)
    if kind == "ivf":
        index.make_direct_map()     # so ItemIndex can reconstruct an item's vector
    return index


def index_kind(index: faiss.Index) -> str:
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(index, faiss.IndexIVF):
        return "ivf"
    if isinstance(index, faiss.IndexFlat):
        return "flat"
    return type(index).__name__


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def save_index(index: faiss.Index, path: str | Path, extra: dict | None = None) -> None:
    """Write ``path`` (faiss.write_index) and ``path.json`` (kind, dim, count, ``extra``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    faiss.write_index(index, str(path))
    meta = {"kind": index_kind(index), "dim": int(index.d), "count": int(index.ntotal),
            "metric": "inner_product", "faiss": faiss.__version__, **(extra or {})}
    _sidecar(path).write_text(json.dumps(meta, indent=1))


def load_index(path: str | Path) -> faiss.Index:
    """Read an index written by ``save_index`` and check it against its sidecar."""
    path = Path(path)
    index = faiss.read_index(str(path))
    side = _sidecar(path)
    if side.is_file():
        meta = json.loads(side.read_text())
        if (meta["dim"], meta["count"]) != (index.d, index.ntotal):
            raise ValueError(f"{path}: index has dim={index.d} count={index.ntotal}, "
                             f"sidecar says dim={meta['dim']} count={meta['count']}")
    return index


def load_index_meta(path: str | Path) -> dict:
    return json.loads(_sidecar(Path(path)).read_text())


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k by inner product.

    Args:
        queries: (B, d) or (d,) float32.
    Returns:
        scores (B, k) float32, ids (B, k) int64, best first; ids are -1 where fewer than k exist.
    """
    q = _as_matrix(queries)
    if q.shape[1] != index.d:
        raise ValueError(f"queries have dim {q.shape[1]}, index has {index.d}")
    return index.search(q, k)


def _genre_key(g: str) -> str:
    return str(g).strip().lower()


class ItemIndex:
    """A faiss index over the catalogue's items plus their metadata, for filtered search.

    Args:
        index: faiss index whose id i is row i of ``items`` (``item_id == i``).
        items: the catalogue DataFrame (``Catalog.items``) or any DataFrame with ``item_id``,
            ``genres`` (list[str]) and ``year`` (float, NaN unknown) columns, indexed 0..N-1.
    """

    def __init__(self, index: faiss.Index, items: pd.DataFrame):
        if index.ntotal != len(items):
            raise ValueError(f"index holds {index.ntotal} vectors but the catalogue {len(items)} items")
        if "item_id" in items and not np.array_equal(items["item_id"].to_numpy(), np.arange(len(items))):
            raise ValueError("items.item_id must equal the row position 0..N-1")
        self.index = index
        self.items = items
        self.kind = index_kind(index)
        self._vectors: np.ndarray | None = None
        # (N, G) genre membership, lower-cased, so a filter is one numpy reduction.
        genres = items["genres"] if "genres" in items else pd.Series([[]] * len(items))
        lists = [[_genre_key(g) for g in (gs if isinstance(gs, (list, tuple, set, np.ndarray)) else [])]
                 for gs in genres]
        self.genre_names = sorted({g for gs in lists for g in gs})
        col = {g: j for j, g in enumerate(self.genre_names)}
        self._genre_matrix = np.zeros((len(items), len(self.genre_names)), dtype=bool)
        for i, gs in enumerate(lists):
            self._genre_matrix[i, [col[g] for g in gs]] = True
        year = items["year"] if "year" in items else pd.Series([np.nan] * len(items))
        self._years = pd.to_numeric(year, errors="coerce").to_numpy(dtype=np.float64)

    # ---- construction and persistence -------------------------------------------------
    @classmethod
    def from_vectors(cls, vectors: np.ndarray, items: pd.DataFrame, kind: str = "flat", **kw) -> ItemIndex:
        return cls(build_index(vectors, kind, **kw), items)

    def save(self, path: str | Path, extra: dict | None = None) -> None:
        save_index(self.index, path, extra)

    @classmethod
    def load(cls, path: str | Path, items: pd.DataFrame) -> ItemIndex:
        return cls(load_index(path), items)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    # ---- vectors --------------------------------------------------------------------------
    @property
    def vectors(self) -> np.ndarray:
        """(N, d) float32 item vectors, reconstructed from the index once and kept."""
        if self._vectors is None:
            if self.kind == "ivf":
                faiss.extract_index_ivf(self.index).make_direct_map()
            self._vectors = self.index.reconstruct_n(0, self.index.ntotal)
        return self._vectors

    def item_vector(self, item_id: int) -> np.ndarray:
        return self.vectors[int(item_id)]

    # ---- filtering ------------------------------------------------------------------------
    def allowed_mask(self, exclude_ids: Iterable[int] | None = (), include_genres: Sequence[str] | None = None,
                     exclude_genres: Sequence[str] | None = None, year_min: float | None = None,
                     year_max: float | None = None, require_all_genres: bool = False) -> np.ndarray:
        """(N,) bool: items that pass every filter.

        ``include_genres``: an item needs at least one of them (all of them with
        ``require_all_genres``); ``exclude_genres``: none of them. Genres match case-insensitively.
        A year bound drops items of unknown year. Bounds are inclusive.
        """
        mask = np.ones(len(self), dtype=bool)
        ids = np.fromiter((int(i) for i in (() if exclude_ids is None else exclude_ids)), dtype=np.int64)
        mask[ids[(ids >= 0) & (ids < len(self))]] = False
        if include_genres:
            hits = self._genre_columns(include_genres)
            if require_all_genres:
                mask &= hits.all(axis=1)
            else:
                mask &= hits.any(axis=1)
        if exclude_genres:
            mask &= ~self._genre_columns(exclude_genres).any(axis=1)
        if year_min is not None:
            mask &= self._years >= year_min       # NaN compares False
        if year_max is not None:
            mask &= self._years <= year_max
        return mask

    def _genre_columns(self, genres: Sequence[str]) -> np.ndarray:
        """(N, len(genres)) membership; an unknown genre is an all-False column."""
        if isinstance(genres, str):
            genres = [genres]
        col = {g: j for j, g in enumerate(self.genre_names)}
        out = np.zeros((len(self), len(genres)), dtype=bool)
        for j, g in enumerate(genres):
            if _genre_key(g) in col:
                out[:, j] = self._genre_matrix[:, col[_genre_key(g)]]
        return out

    # ---- search ---------------------------------------------------------------------------
    def search(self, query_vecs: np.ndarray, k: int = 10, exclude_ids: Iterable[int] | None = (),
               include_genres: Sequence[str] | None = None, exclude_genres: Sequence[str] | None = None,
               year_min: float | None = None, year_max: float | None = None,
               require_all_genres: bool = False) -> list[tuple[int, float]] | list[list[tuple[int, float]]]:
        """The k best items by inner product among those passing the filters.

        Args:
            query_vecs: (d,) for one query, or (B, d) for a batch.
            k: results wanted; fewer only when fewer items pass the filters.
            exclude_ids, include_genres, exclude_genres, year_min, year_max, require_all_genres:
                see ``allowed_mask``.
        Returns:
            [(item_id, score), ...] best first for a (d,) query; a list of those for (B, d).
        """
        single = np.ndim(query_vecs) == 1
        q = _as_matrix(query_vecs)
        if q.shape[1] != self.dim:
            raise ValueError(f"query dim {q.shape[1]} != index dim {self.dim}")
        mask = self.allowed_mask(exclude_ids, include_genres, exclude_genres, year_min, year_max,
                                 require_all_genres)
        n_allowed = int(mask.sum())
        k = max(0, min(int(k), n_allowed))
        results: list[list[tuple[int, float]] | None] = [None] * len(q)
        if k == 0:
            results = [[] for _ in q]
        else:
            todo = np.arange(len(q))
            k_try = k if n_allowed == len(self) else k * GROWTH
            while len(todo) and k_try < len(self):
                scores, ids = self._search_wider(q[todo], k_try, k)
                still = []
                for row, qi in enumerate(todo):
                    keep = ids[row] >= 0
                    keep[keep] = mask[ids[row][keep]]
                    if keep.sum() >= k:
                        sel = np.flatnonzero(keep)[:k]
                        results[qi] = [(int(i), float(s)) for i, s in zip(ids[row][sel], scores[row][sel])]
                    else:
                        still.append(qi)
                todo = np.asarray(still, dtype=np.int64)
                k_try *= GROWTH
            if len(todo):       # the asked-for neighbours ran past the index: score allowed items exactly
                allowed = np.flatnonzero(mask)
                scores = q[todo] @ self.vectors[allowed].T                      # (b, n_allowed)
                for row, qi in enumerate(todo):
                    top = _top_k(scores[row], k)
                    results[qi] = [(int(allowed[j]), float(scores[row, j])) for j in top]
        return results[0] if single else results

    def _search_wider(self, q: np.ndarray, k_try: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """faiss search for k_try neighbours. IVF also visits k_try/k times more cells, or the
        extra neighbours would all come from the same few cells; HNSW widens its beam to k_try
        by itself."""
        if self.kind != "ivf":
            return search(self.index, q, k_try)
        ivf = faiss.extract_index_ivf(self.index)
        params = faiss.SearchParametersIVF(nprobe=min(ivf.nlist, ivf.nprobe * max(1, k_try // k)))
        return self.index.search(q, k_try, params=params)

    def search_by_item(self, item_id: int, k: int = 10, exclude_ids: Iterable[int] = (), **filters
                       ) -> list[tuple[int, float]]:
        """Items most similar to ``item_id`` (by its own vector), never the item itself."""
        return self.search(self.item_vector(item_id), k, exclude_ids={int(item_id), *exclude_ids}, **filters)

    def search_by_user(self, user_vec: np.ndarray, k: int = 10, seen_ids: Iterable[int] = (), **filters
                       ) -> list[tuple[int, float]]:
        """Items scoring highest against a user vector (d,), without the user's seen items."""
        return self.search(np.asarray(user_vec, dtype=np.float32).reshape(-1), k, exclude_ids=seen_ids, **filters)


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k largest scores, best first (ties by position, as faiss does)."""
    if k >= len(scores):
        return np.argsort(-scores, kind="stable")
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.lexsort((part, -scores[part]))]
