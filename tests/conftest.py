"""Shared fixtures: tiny synthetic MovieLens-format data written to tmp_path (never real data)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"

# 20 fixture movies: (movielens id, raw title, genres)
MOVIES = [
    (1, "Toy Story (1995)", "Animation|Children|Comedy"),
    (2, "Toy Story 2 (1999)", "Animation|Children|Comedy"),
    (3, "Matrix, The (1999)", "Action|Sci-Fi|Thriller"),
    (4, "Alien (1979)", "Horror|Sci-Fi"),
    (5, "Aliens (1986)", "Action|Horror|Sci-Fi"),
    (6, "Hamlet (1990)", "Drama"),
    (7, "Hamlet (1996)", "Crime|Drama|Romance"),
    (8, "City of Lost Children, The (Cité des enfants perdus, La) (1995)", "Adventure|Drama|Fantasy|Mystery|Sci-Fi"),
    (9, "Godfather, The (1972)", "Crime|Drama"),
    (10, "Godfather: Part II, The (1974)", "Crime|Drama"),
    (11, "Amelie (Fabuleux destin d'Amélie Poulain, Le) (2001)", "Comedy|Romance"),
    (12, "Heat (1995)", "Action|Crime|Thriller"),
    (13, "Shrek (2001)", "Adventure|Animation|Children|Comedy|Fantasy|Romance"),
    (14, "Scream (1996)", "Comedy|Horror|Mystery|Thriller"),
    (15, "Fargo (1996)", "Comedy|Crime|Drama|Thriller"),
    (16, "Titanic (1997)", "Drama|Romance"),
    (17, "Jaws (1975)", "Action|Horror"),
    (18, "Casablanca (1942)", "Drama|Romance"),
    (19, "Up (2009)", "Adventure|Animation|Children|Drama"),
    (20, "Inception (2010)", "Action|Crime|Drama|Mystery|Sci-Fi|Thriller|IMAX"),
]


def synthetic_ratings(n_users: int = 12, seed: int = 0) -> list[tuple[int, int, float, int]]:
    """(user, movie, rating, timestamp) rows: each user rates 8 distinct movies at increasing times."""
    import random
    rng = random.Random(seed)
    rows = []
    for u in range(1, n_users + 1):
        for j, m in enumerate(rng.sample(range(1, len(MOVIES) + 1), 8)):
            rows.append((u, m, float(rng.randint(1, 5)), 1_000_000 + 100 * u + j))
    return rows


TAGS = ["1,3,cyberpunk,1", "2,3,Cyberpunk,2", "2,3,keanu,3"]


def write_latest_small(root: Path, rows=None, movies=MOVIES, tags=TAGS) -> Path:
    """ml-latest-small's four CSV files for ``movies`` (default the 20 fixture movies) under root."""
    d = root / "ml-latest-small"
    d.mkdir(parents=True)
    rows = rows or synthetic_ratings()
    crlf = "\r\n"
    (d / "movies.csv").write_text(crlf.join(["movieId,title,genres"] + [
        f'{m},"{t}",{g}' if "," in t else f"{m},{t},{g}" for m, t, g in movies]) + crlf, encoding="utf-8")
    (d / "ratings.csv").write_text(crlf.join(["userId,movieId,rating,timestamp"] + [
        f"{u},{m},{r},{t}" for u, m, r, t in rows]) + crlf, encoding="utf-8")
    (d / "links.csv").write_text(crlf.join(["movieId,imdbId,tmdbId"] + [
        f"{m},{1000000 + m:07d},{m}" for m, _, _ in movies]) + crlf, encoding="utf-8")
    (d / "tags.csv").write_text(crlf.join(["userId,movieId,tag,timestamp", *tags]) + crlf)
    return root


def write_ml100k(root: Path, rows=None) -> Path:
    from retrieval.data import ML100K_GENRES
    d = root / "ml-100k"
    d.mkdir(parents=True)
    rows = rows or synthetic_ratings()
    (d / "u.data").write_text("".join(f"{u}\t{m}\t{int(r)}\t{t}\n" for u, m, r, t in rows), encoding="latin-1")
    lines = []
    for m, t, g in MOVIES:
        gs = set(g.split("|"))
        flags = ["1" if name in gs else "0" for name in ML100K_GENRES]
        lines.append("|".join([str(m), t, "01-Jan-1995", "", "http://example"] + flags))
    (d / "u.item").write_text("\n".join(lines) + "\n", encoding="latin-1")
    return root


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    write_latest_small(root)
    write_ml100k(root)
    return root


@pytest.fixture
def fixture_catalog(data_root):
    from retrieval.catalog import build_catalog
    from retrieval.data import load_dataset
    return build_catalog(load_dataset("ml-latest-small", data_root))


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory) -> str:
    """A local model directory holding the tiny random LM and its tokenizer
    (``tests.tiny_models.tiny_lm()``): what the smoke configs' LLM is pointed at in tests."""
    from tests.tiny_models import save_tiny_lm

    return save_tiny_lm(tmp_path_factory.mktemp("tiny_llm"))
