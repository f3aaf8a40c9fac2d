"""Title lookup: what people type resolves to the right catalogue items."""
import numpy as np
import pytest

from retrieval.titles import TitleIndex, normalize_title


@pytest.fixture
def index(fixture_catalog):
    return TitleIndex(fixture_catalog)


def test_normalize_title():
    assert normalize_title("The Matrix!") == "matrix"
    assert normalize_title("Amélie") == "amelie"
    assert normalize_title("L'Avventura") == "avventura"


@pytest.mark.parametrize("query, title", [
    ("the matrix", "The Matrix"),
    ("Matrix 1999", "The Matrix"),
    ("matrx", "The Matrix"),
    ("Toy Story 2", "Toy Story 2"),
    ("toy story", "Toy Story"),
    ("Aliens", "Aliens"),
    ("cite des enfants perdus", "The City of Lost Children"),
    ("godfather part ii", "The Godfather: Part II"),
])
def test_resolves_to_the_right_item(index, query, title):
    res = index.resolve(query)
    assert res.item is not None and res.item.title == title
    assert 0 < res.item.score <= 1


def test_typo_scores_below_exact(index):
    assert index.resolve("matrx").item.score < index.resolve("the matrix").item.score == 1.0


def test_ambiguous_name_returns_candidates(index):
    res = index.resolve("Hamlet")
    assert res.item is None and res.ambiguous
    assert sorted(m.year for m in res.candidates) == [1990, 1996]


def test_year_disambiguates(index):
    assert index.resolve("Hamlet 1996").item.year == 1996
    assert index.resolve("Hamlet (1990)").item.year == 1990


def test_popularity_breaks_a_wide_tie(fixture_catalog):
    pop = np.zeros(len(fixture_catalog))
    pop[fixture_catalog.item_ids_for_movielens([7])[0]] = 100
    pop[fixture_catalog.item_ids_for_movielens([6])[0]] = 2
    assert TitleIndex(fixture_catalog, pop).resolve("hamlet").item.year == 1996


def test_unknown_title_returns_nothing(index):
    assert index.resolve("Oppenheimer").candidates == []
    assert index.lookup("") == []
