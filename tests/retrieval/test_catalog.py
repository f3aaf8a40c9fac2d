"""Catalogue: title cleaning, stable ids, tags and the embedded text field."""
import numpy as np
import pytest

from retrieval.catalog import alternative_titles, clean_title


@pytest.mark.parametrize("raw, title, year", [
    ("Matrix, The (1999)", "The Matrix", 1999),
    ("Toy Story (1995)", "Toy Story", 1995),
    ("City of Lost Children, The (Cité des enfants perdus, La) (1995)", "The City of Lost Children", 1995),
    ("Enfants du paradis, Les (1945)", "Les Enfants du paradis", 1945),
    ("Homme et une femme, Un (1966)", "Un Homme et une femme", 1966),
    ("Ascent of Money, The (2008-2009)", "The Ascent of Money", 2008),
    ("Babylon 5", "Babylon 5", None),
    ("Seven (a.k.a. Se7en) (1995)", "Seven", 1995),
])
def test_clean_title(raw, title, year):
    assert clean_title(raw) == (title, year)


def test_alternative_titles_keep_original_names():
    assert alternative_titles("City of Lost Children, The (Cité des enfants perdus, La) (1995)") == [
        "La Cité des enfants perdus"]
    assert alternative_titles("Seven (a.k.a. Se7en) (1995)") == ["Se7en"]


def test_catalog_rows_are_stable_and_complete(fixture_catalog):
    items = fixture_catalog.items
    assert list(items.item_id) == list(range(len(items)))
    assert list(items.movielens_id) == sorted(items.movielens_id)
    matrix = items[items.movielens_id == 3].iloc[0]
    assert matrix.title == "The Matrix" and matrix.year == 1999.0
    assert matrix.tags == ["cyberpunk", "keanu"]  # case-folded, most frequent first
    assert matrix.imdb_id == "1000003"
    assert matrix.text.startswith("The Matrix (1999). Genres: Action, Sci-Fi, Thriller. Tags: cyberpunk, keanu.")
    assert fixture_catalog.description_coverage() == 0.0  # no descriptions folder in the fixture
    assert fixture_catalog.item_ids_for_movielens([3, 999]).tolist() == [2, -1]
    assert "Sci-Fi" in fixture_catalog.genres
    assert np.isnan(items.year).sum() == 0
