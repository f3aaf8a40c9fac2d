"""faiss indexes and filtered item search, checked against brute-force numpy on 20 fixture movies."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from retrieval.index import ItemIndex, build_index, load_index, load_index_meta, save_index, search

D = 16
# (movielens id, title, year, genres): made up for the tests, not copied from MovieLens.
FIXTURE = [
    (1, "Toy Story", 1995, ["Animation", "Children", "Comedy"]),
    (2, "Toy Story 2", 1999, ["Animation", "Children", "Comedy"]),
    (3, "The Matrix", 1999, ["Action", "Sci-Fi", "Thriller"]),
    (4, "Alien", 1979, ["Horror", "Sci-Fi"]),
    (5, "Aliens", 1986, ["Action", "Horror", "Sci-Fi"]),
    (6, "Hamlet", 1990, ["Drama"]),
    (7, "Hamlet", 1996, ["Crime", "Drama", "Romance"]),
    (8, "The City of Lost Children", 1995, ["Adventure", "Drama", "Fantasy", "Sci-Fi"]),
    (9, "The Godfather", 1972, ["Crime", "Drama"]),
    (10, "The Godfather: Part II", 1974, ["Crime", "Drama"]),
    (11, "Amelie", 2001, ["Comedy", "Romance"]),
    (12, "Heat", 1995, ["Action", "Crime", "Thriller"]),
    (13, "Shrek", 2001, ["Adventure", "Animation", "Children", "Comedy"]),
    (14, "Scream", 1996, ["Comedy", "Horror", "Mystery"]),
    (15, "Fargo", 1996, ["Comedy", "Crime", "Drama"]),
    (16, "Titanic", 1997, ["Drama", "Romance"]),
    (17, "Jaws", 1975, ["Action", "Horror"]),
    (18, "Casablanca", 1942, ["Drama", "Romance"]),
    (19, "Unknown Year Movie", None, ["Drama", "Sci-Fi"]),
    (20, "Inception", 2010, ["Action", "Drama", "Sci-Fi", "Thriller"]),
]


def make_items(rows=FIXTURE) -> pd.DataFrame:
    return pd.DataFrame({
        "item_id": np.arange(len(rows)),
        "movielens_id": [r[0] for r in rows],
        "title": [r[1] for r in rows],
        "year": [float("nan") if r[2] is None else float(r[2]) for r in rows],
        "genres": [list(r[3]) for r in rows],
        "text": [f"{r[1]}. {', '.join(r[3])}." for r in rows],
    })


def unit(rng, n, d=D) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def items() -> pd.DataFrame:
    return make_items()


@pytest.fixture
def vecs() -> np.ndarray:
    return unit(np.random.default_rng(0), len(FIXTURE))


def brute(vecs, q, k, allowed=None):
    """[(item_id, score)] by numpy: the reference every search is checked against."""
    s = vecs @ q
    ids = np.arange(len(vecs)) if allowed is None else np.flatnonzero(allowed)
    order = ids[np.argsort(-s[ids], kind="stable")][:k]
    return [(int(i), float(s[i])) for i in order]


def assert_same(got, want):
    assert [i for i, _ in got] == [i for i, _ in want]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in want], rtol=1e-5, atol=1e-6)


def test_flat_topk_matches_bruteforce(vecs):
    index = build_index(vecs)
    q = unit(np.random.default_rng(1), 7)
    scores, ids = search(index, q, 5)
    assert scores.shape == ids.shape == (7, 5)
    for row in range(7):
        assert_same(list(zip(ids[row], scores[row])), brute(vecs, q[row], 5))


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_save_load_round_trip_gives_identical_results(tmp_path, kind):
    x = unit(np.random.default_rng(2), 500)
    q = unit(np.random.default_rng(3), 10)
    index = build_index(x, kind)
    path = tmp_path / f"{kind}.faiss"
    save_index(index, path, extra={"catalog": "fixture"})
    loaded = load_index(path)
    s0, i0 = search(index, q, 10)
    s1, i1 = search(loaded, q, 10)
    np.testing.assert_array_equal(i0, i1)
    np.testing.assert_array_equal(s0, s1)
    meta = load_index_meta(path)
    assert meta["kind"] == kind and meta["dim"] == D and meta["count"] == 500
    assert meta["catalog"] == "fixture"


def test_load_rejects_a_sidecar_from_another_index(tmp_path):
    path = tmp_path / "a.faiss"
    save_index(build_index(unit(np.random.default_rng(0), 10)), path)
    side = tmp_path / "a.faiss.json"
    side.write_text(json.dumps({**json.loads(side.read_text()), "count": 11}))
    with pytest.raises(ValueError, match="count"):
        load_index(path)


def test_unknown_kind_is_an_error(vecs):
    with pytest.raises(ValueError, match="unknown index kind"):
        build_index(vecs, "lsh")


def test_item_index_needs_one_vector_per_item(items, vecs):
    with pytest.raises(ValueError, match="20 items"):
        ItemIndex(build_index(vecs[:19]), items)


def test_unfiltered_search_matches_bruteforce_single_and_batch(items, vecs):
    ix = ItemIndex.from_vectors(vecs, items)
    q = unit(np.random.default_rng(4), 3)
    assert_same(ix.search(q[0], 6), brute(vecs, q[0], 6))
    batch = ix.search(q, 6)
    assert len(batch) == 3
    for row in range(3):
        assert_same(batch[row], brute(vecs, q[row], 6))


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
@pytest.mark.parametrize("k", [3, 8])   # k=3 goes through the growing faiss search, k=8 past it
def test_exclude_seen_keeps_k_results(items, vecs, k, kind):
    ix = ItemIndex.from_vectors(vecs, items, kind=kind)
    q = vecs[0]
    seen = set(range(0, 20, 2)) | {1, 3}                     # 12 of 20 seen
    allowed = np.ones(20, bool)
    allowed[list(seen)] = False
    got = ix.search(q, k, exclude_ids=seen)
    assert len(got) == k
    assert not {i for i, _ in got} & seen
    assert_same(got, brute(vecs, q, k, allowed))


def test_include_genres_case_insensitive_and_k_results(items, vecs):
    ix = ItemIndex.from_vectors(vecs, items)
    q = unit(np.random.default_rng(5), 1)[0]
    got = ix.search(q, 5, include_genres=["sci-fi"])            # catalogue spells it "Sci-Fi"
    allowed = items["genres"].map(lambda g: "Sci-Fi" in g).to_numpy()
    assert allowed.sum() == 6
    assert len(got) == 5
    assert all("Sci-Fi" in items.genres[i] for i, _ in got)
    assert_same(got, brute(vecs, q, 5, allowed))


def test_include_any_versus_all_genres(items, vecs):
    ix = ItemIndex.from_vectors(vecs, items)
    q = vecs[3]
    any_ = ix.search(q, 20, include_genres=["Horror", "THRILLER"])
    all_ = ix.search(q, 20, include_genres=["Horror", "Sci-Fi"], require_all_genres=True)
    assert {i for i, _ in any_} == {i for i, g in enumerate(items.genres) if {"Horror", "Thriller"} & set(g)}
    assert {i for i, _ in all_} == {3, 4}                      # Alien, Aliens


def test_exclude_genres(items, vecs):
    ix = ItemIndex.from_vectors(vecs, items)
    q = vecs[5]
    got = ix.search(q, 4, exclude_genres=["drama", "comedy"])
    allowed = items["genres"].map(lambda g: not {"Drama", "Comedy"} & set(g)).to_numpy()
    assert len(got) == 4
    assert all(not {"Drama", "Comedy"} & set(items.genres[i]) for i, _ in got)
    assert_same(got, brute(vecs, q, 4, allowed))


def test_unknown_genre_matches_nothing(items, vecs):
    ix = ItemIndex.from_vectors(vecs, items)
    assert ix.search(vecs[0], 5, include_genres=["western"]) == []
    assert len(ix.search(vecs[0], 5, exclude_genres=["western"])) == 5


def test_year_range_inclusive_and_drops_unknown_years(items, vecs):
    ix = ItemIndex.from_vectors(vecs, items)
    q = vecs[18]                                                # the unknown-year movie itself
    got = ix.search(q, 20, year_min=1990, year_max=1996)
    want = {i for i, y in enumerate(items.year) if 1990 <= y <= 1996}
    assert {i for i, _ in got} == want and len(want) == 7
    assert 18 not in {i for i, _ in got}
    assert [i for i, _ in ix.search(q, 3, year_max=1975)] == [i for i, _ in brute(
        vecs, q, 3, (items.year <= 1975).to_numpy())]
    assert {i for i, _ in ix.search(q, 5, year_min=2001)} == {10, 12, 19}   # only 3 exist


def test_combined_filters_match_bruteforce(items, vecs):
    ix = ItemIndex.from_vectors(vecs, items)
    q = unit(np.random.default_rng(6), 1)[0]
    got = ix.search(q, 3, exclude_ids={2}, include_genres=["action"], exclude_genres=["horror"],
                    year_min=1990)
    allowed = ix.allowed_mask({2}, ["action"], ["horror"], 1990)
    assert {int(i) for i in np.flatnonzero(allowed)} == {11, 19}   # Heat, Inception
    assert_same(got, brute(vecs, q, 3, allowed))


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
@pytest.mark.parametrize("keep", [0.1, 0.01])    # 1 and 3 growth steps (k*4, k*16, k*64, k*256)
def test_heavy_filtering_still_returns_k_on_a_larger_index(kind, keep):
    rng = np.random.default_rng(7)
    n = 3000
    x = unit(rng, n, 32)
    genres = [["Rare"] if rng.random() < keep else ["Common"] for _ in range(n)]
    items = pd.DataFrame({"item_id": np.arange(n), "genres": genres, "year": np.full(n, 2000.0)})
    ix = ItemIndex.from_vectors(x, items, kind=kind)
    q = unit(rng, 5, 32)
    allowed = np.array(["Rare" in g for g in genres])
    for row, got in enumerate(ix.search(q, 10, include_genres=["rare"])):
        assert len(got) == 10
        assert all(allowed[i] for i, _ in got)
        want = brute(x, q[row], 10, allowed)
        if kind == "flat":
            assert_same(got, want)
        else:
            assert len({i for i, _ in got} & {i for i, _ in want}) >= 8


def test_search_by_item_excludes_itself(items, vecs):
    ix = ItemIndex.from_vectors(vecs, items)
    got = ix.search_by_item(4, 5)
    allowed = np.ones(20, bool)
    allowed[4] = False
    assert 4 not in {i for i, _ in got}
    assert_same(got, brute(vecs, vecs[4], 5, allowed))
    got = ix.search_by_item(4, 5, exclude_ids={3}, include_genres=["Sci-Fi"])
    assert {i for i, _ in got} == {2, 7, 18, 19}                 # Sci-Fi minus Alien(s)


def test_search_by_user_skips_seen(items, vecs):
    ix = ItemIndex.from_vectors(vecs, items)
    user = vecs[[0, 1, 12]].mean(axis=0)
    got = ix.search_by_user(user, 4, seen_ids=[0, 1, 12])
    allowed = np.ones(20, bool)
    allowed[[0, 1, 12]] = False
    assert_same(got, brute(vecs, user, 4, allowed))


def test_item_vectors_reconstruct_for_every_kind(items, vecs):
    for kind in ("flat", "hnsw", "ivf"):
        ix = ItemIndex.from_vectors(vecs, items, kind=kind, nlist=2)
        np.testing.assert_allclose(ix.vectors, vecs, atol=1e-6)


@pytest.mark.parametrize("kind,kw", [("hnsw", {}), ("ivf", {"nprobe": 24})])
def test_approximate_recall_is_high_on_small_random_data(kind, kw):
    rng = np.random.default_rng(8)
    x, q = unit(rng, 2000, 32), unit(rng, 50, 32)
    _, truth = search(build_index(x), q, 10)
    _, found = search(build_index(x, kind, **kw), q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)])
    assert recall >= 0.9, recall


def test_works_on_a_built_catalog(fixture_catalog):
    items = fixture_catalog.items
    x = unit(np.random.default_rng(10), len(items))
    ix = ItemIndex.from_vectors(x, items)
    got = ix.search(x[0], 3, include_genres=["SCI-FI"], year_max=1995)
    allowed = np.array([("Sci-Fi" in g) and y <= 1995 for g, y in zip(items.genres, items.year)])
    assert allowed.sum() >= 3
    assert_same(got, brute(x, x[0], 3, allowed))
