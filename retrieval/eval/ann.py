"""Latency and recall benchmarks of the faiss indexes: exact search over real vectors, and an
approximate index (HNSW or IVF) over synthetic vectors, against exact search."""
from __future__ import annotations

import time

import faiss
import numpy as np

from retrieval.eval.report import hardware
from retrieval.index import _as_matrix, build_index


def _hardware(n_threads: int) -> dict:
    return {**hardware(), "faiss_threads": n_threads, "faiss": faiss.__version__}


def _single_query_latencies_ms(index: faiss.Index, queries: np.ndarray, k: int) -> np.ndarray:
    out = np.empty(len(queries))
    for i in range(len(queries)):
        q = queries[i: i + 1]
        t = time.perf_counter()
        index.search(q, k)
        out[i] = (time.perf_counter() - t) * 1e3
    return out


def bench_exact(vectors: np.ndarray, n_queries: int = 1000, k: int = 10, seed: int = 0,
                n_threads: int = 2) -> dict:
    """Single-query latency of exact search (IndexFlatIP) over ``vectors``.

    Queries are random rows of ``vectors`` plus noise, renormalised.
    Returns:
        dict with n, d, k, n_queries, p50_ms, p95_ms, mean_ms and hardware.
    """
    x = _as_matrix(vectors)
    rng = np.random.default_rng(seed)
    q = x[rng.integers(0, len(x), n_queries)] + 0.1 * rng.standard_normal((n_queries, x.shape[1]), dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    prev = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n_threads)
    try:
        index = build_index(x, "flat")
        _single_query_latencies_ms(index, q[:20], k)            # warm-up
        lat = _single_query_latencies_ms(index, q, k)
    finally:
        faiss.omp_set_num_threads(prev)
    return {"index": "flat", "n": len(x), "d": x.shape[1], "k": k, "n_queries": n_queries,
            "p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
            "mean_ms": float(lat.mean()), "hardware": _hardware(n_threads)}


def synthetic_vectors(n: int, d: int, n_clusters: int = 1000, spread: float = 0.5, seed: int = 0) -> np.ndarray:
    """(n, d) unit vectors from a Gaussian mixture, so neighbours are structured as in real
    embeddings (isotropic Gaussian data has no structure and is a worst case for any ANN)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, d), dtype=np.float32)
    x = np.empty((n, d), np.float32)
    for s in range(0, n, 200_000):              # chunks keep the temporaries small
        e = min(n, s + 200_000)
        x[s:e] = centres[rng.integers(0, n_clusters, e - s)]
        x[s:e] += spread * rng.standard_normal((e - s, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def bench_ann(n: int = 1_000_000, d: int = 64, k: int = 10, n_queries: int = 1000, seed: int = 0,
              kind: str = "hnsw", data: str = "mixture", n_threads: int = 2, **index_kw) -> dict:
    """Build an approximate index over ``n`` synthetic unit vectors and time it.

    ``data``: "mixture" (``synthetic_vectors``, clustered like real embeddings) or "gaussian"
    (isotropic, normalised: the hard case). Queries come from the same distribution but are
    not in the index. Recall@k is the mean overlap
    of the approximate top-k with exact (IndexFlatIP) top-k.
    Returns:
        dict with build_s, p50_ms / p95_ms (single-query), recall_at_k, the index parameters
        and hardware.
    """
    if kind not in ("hnsw", "ivf"):
        raise ValueError("bench_ann times an approximate index: kind='hnsw' or 'ivf'")
    if data == "mixture":
        xq = synthetic_vectors(n + n_queries, d, seed=seed)
    elif data == "gaussian":
        xq = np.random.default_rng(seed).standard_normal((n + n_queries, d), dtype=np.float32)
        xq /= np.linalg.norm(xq, axis=1, keepdims=True)
    else:
        raise ValueError(f"unknown data {data!r}; expected 'mixture' or 'gaussian'")
    x, q = xq[:n], xq[n:]
    prev = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n_threads)
    try:
        t = time.perf_counter()
        index = build_index(x, kind, seed=seed, **index_kw)
        build_s = time.perf_counter() - t
        exact = faiss.IndexFlatIP(d)
        exact.add(x)
        _, truth = exact.search(q, k)
        del exact
        _, found = index.search(q, k)
        recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(found, truth)]))
        _single_query_latencies_ms(index, q[:20], k)
        lat = _single_query_latencies_ms(index, q, k)
    finally:
        faiss.omp_set_num_threads(prev)
    params = ({"M": index_kw.get("hnsw_m", 32), "efConstruction": index.hnsw.efConstruction, "efSearch": index.hnsw.efSearch}
              if kind == "hnsw" else {"nlist": index.nlist, "nprobe": index.nprobe})
    return {"index": kind, "params": params, "n": n, "d": d, "k": k, "n_queries": n_queries,
            "data": {"mixture": "gaussian mixture, 1000 clusters, unit norm",
                     "gaussian": "isotropic gaussian, unit norm"}[data], "build_s": build_s,
            "p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
            f"recall_at_{k}": recall, "hardware": _hardware(n_threads)}
