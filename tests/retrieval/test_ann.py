"""The faiss benchmarks (retrieval/eval/ann.py) report latency, recall and the hardware."""
import numpy as np

from retrieval.eval.ann import bench_ann, bench_exact, synthetic_vectors


def test_benchmarks_report_latency_and_recall():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((1000, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ex = bench_exact(x, n_queries=20)
    assert ex["n"] == 1000 and ex["d"] == 32 and 0 < ex["p50_ms"] <= ex["p95_ms"]
    assert "cpu_flags" in ex["hardware"] and ex["hardware"]["faiss_threads"] == 2
    ann = bench_ann(n=2000, d=16, n_queries=20)
    assert ann["n"] == 2000 and ann["build_s"] > 0 and ann["p50_ms"] > 0
    assert ann["recall_at_10"] >= 0.9


def test_synthetic_vectors_are_unit_and_seeded():
    a, b = synthetic_vectors(500, 8, n_clusters=10, seed=3), synthetic_vectors(500, 8, n_clusters=10, seed=3)
    assert a.shape == (500, 8) and np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    assert np.array_equal(a, b)
