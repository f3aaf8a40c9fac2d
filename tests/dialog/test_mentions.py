"""What counts as a title mention on real-conversation phrasings (issue 15): common-word and
first-name titles need strong evidence, fuzzy matches need long spans, "Title (Year)" mentions,
genre words inside titles, accents and articles, and reactions to the movies the other side named.
A small synthetic catalogue of its own (written to tmp_path) holds the awkward titles."""
from __future__ import annotations

import pytest

from dialog.eval.bench_mentions import attributed
from dialog.understand import TitleFinder, parse_message
from retrieval.titles import TitleIndex

# (movielens id, raw title, genres): titles that look like ordinary words, first names, genre words
MOVIES = [
    (1, "Sunday (1997)", "Drama"),
    (2, "Nobody (2021)", "Action"),
    (3, "Gary (2003)", "Comedy"),
    (4, "Always Here (2011)", "Drama"),
    (5, "War for the Moon (2004)", "Sci-Fi|War"),
    (6, "Crème Brûlée (1999)", "Comedy|Romance"),
    (7, "Go (1999)", "Comedy|Crime"),
    (8, "Lighthouse Keepers (2005)", "Drama"),
    (9, "Lighthouse Keepers (2015)", "Drama"),
    (10, "Red Orchard (1988)", "Drama"),
    (11, "Marlowe Street (1979)", "Crime"),
    (12, "Harbour, The (2001)", "Thriller"),
    (13, "Glass Ribbon (1994)", "Mystery"),
    (14, "Fenwick Station (2008)", "Drama"),
]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    from retrieval.catalog import build_catalog
    from retrieval.data import load_dataset
    from tests.conftest import write_latest_small
    rows = [(u, m, 4.0, 1000 + 10 * u + m) for u in (1, 2, 3) for m, _, _ in MOVIES]
    root = write_latest_small(tmp_path_factory.mktemp("mentions"), rows, movies=MOVIES, tags=[])
    return build_catalog(load_dataset("ml-latest-small", root))


@pytest.fixture(scope="module")
def finder(catalog):
    return TitleFinder(TitleIndex(catalog))


def read(finder, catalog, text, n_last=0):
    u = parse_message(text, finder, catalog.genres, n_last, 2021)
    return u, [(m.kind, catalog.display(m.item_id) if m.item_id is not None else None) for m in u.titles]


@pytest.mark.parametrize("text", ["Nobody told me, but I liked that", "always here for a good comedy",
                                  "sure, go on, what else is there", "We watched it on sunday night"])
def test_ordinary_words_are_not_titles(finder, catalog, text):
    assert read(finder, catalog, text)[1] == []


def test_common_word_title_with_strong_evidence(finder, catalog):
    assert read(finder, catalog, 'I enjoyed "Nobody" a lot')[1] == [("liked", "Nobody (2021)")]
    assert read(finder, catalog, "I enjoyed Nobody (2021) a lot")[1] == [("liked", "Nobody (2021)")]
    # written exactly as the title, capitals and all, in the middle of a sentence
    assert read(finder, catalog, "we both loved Always Here last week")[1] == [("liked", "Always Here (2011)")]


def test_first_names_are_people_not_titles(finder, catalog):
    assert read(finder, catalog, "I really like Gary, he is so funny")[1] == []
    assert read(finder, catalog, "anything with Gary Marlowe in it?")[1] == []
    assert read(finder, catalog, 'I liked "Gary" though')[1] == [("liked", "Gary (2003)")]


def test_fuzzy_matching_needs_a_long_span(finder, catalog):
    assert read(finder, catalog, "I loved Gos")[1] in ([], [("liked", None)])     # not "Go"
    assert read(finder, catalog, "I loved Lighthose Keepers (2005)")[1] == [("liked", "Lighthouse Keepers (2005)")]
    assert read(finder, catalog, "I loved Glass Ribbonn")[1] == [("liked", "Glass Ribbon (1994)")]


def test_invented_title_is_unknown_not_a_near_miss(finder, catalog):
    assert read(finder, catalog, "I loved Pelican Orchard Seven")[1] == [("liked", None)]


def test_genre_word_inside_a_title_is_no_genre(finder, catalog):
    u, found = read(finder, catalog, "got anything close to War for the Moon?")
    assert found == [("mention", "War for the Moon (2004)")]
    assert u.include_genres == [] and u.exclude_genres == []


def test_accents_and_articles_do_not_matter(finder, catalog):
    assert read(finder, catalog, "I adored Creme Brulee")[1] == [("liked", "Crème Brûlée (1999)")]
    assert read(finder, catalog, "I adored Harbour")[1] == [("liked", "The Harbour (2001)")]
    assert read(finder, catalog, "I adored The Harbour")[1] == [("liked", "The Harbour (2001)")]


def test_short_title_written_exactly(finder, catalog):
    assert read(finder, catalog, "my brother and I liked Go and Red Orchard")[1] == [
        ("liked", "Go (1999)"), ("liked", "Red Orchard (1988)")]
    assert read(finder, catalog, "let's go")[1] == []


def test_title_with_year_picks_that_year(finder, catalog):
    _, found = read(finder, catalog, "Have you seen Lighthouse Keepers (2015) and Red Orchard (1988) yet")
    assert found == [("seen", "Lighthouse Keepers (2015)"), ("mention", "Red Orchard (1988)")]
    # a year the catalogue has no such title for: not the film of another year
    assert read(finder, catalog, "I saw Red Orchard (2012)")[1] == [("seen", None)]
    # a title inside a longer name with a year is the longer name
    assert read(finder, catalog, "I like Gold Harbour (2001)")[1] == [("liked", None)]


def test_reaction_to_named_movies(finder, catalog):
    assert read(finder, catalog, "oh yes, loved that one", n_last=2)[0].like_refs == [0, 1]
    assert read(finder, catalog, "those were really not for me", n_last=1)[0].dislike_refs == [0]
    # a list of five: "it" says not which one
    assert read(finder, catalog, "oh yes, loved that one", n_last=5)[0].like_refs == []


def test_manager_counts_reaction_to_recommender_turn(manager):
    s = manager.new_state()
    s = manager.observe_assistant(s, "Have you tried Fargo (1996)? Or Heat (1995)?")
    s = manager.observe_user(s, "yes, I enjoyed both of them! more like those")
    fargo, heat = s.last_suggestions
    assert fargo in s.liked and heat in s.liked
    s2 = manager.observe_user(manager.observe_assistant(manager.new_state(), "What about Jaws (1975)?"),
                              "I've seen it already")
    assert s2.seen == s2.last_suggestions


def test_bench_attribution():
    assert attributed("Red Orchard (1988)", "i loved red orchard")
    assert attributed("Go (1999)", "have you seen Go (1999)?")
    assert not attributed("Go (1999)", "I will go there")
    assert not attributed("It", "It was fine") and attributed("Up", "we liked Up")


def test_bench_counts_people_against_the_annotations(finder, catalog):
    import numpy as np

    from dialog.eval.bench_mentions import measure, rules_reader
    from retrieval.crs_data import CRSSample, TitleMapper
    from retrieval.people import Credit, PeopleIndex, name_key
    people = PeopleIndex({name_key("Gary Fenwick"): "Gary Fenwick", name_key("Ida Marlowe"): "Ida Marlowe"},
                         {name_key("Gary Fenwick"): [Credit(13, "director", 0, ("clayrs",))],
                          name_key("Ida Marlowe"): [Credit(10, "cast", 0, ("clayrs",))]}, len(catalog), "t")
    samples = [CRSSample("opendialkg", "1", 1, ("Do you like Gary Fenwick movies?",), ("Gary Fenwick",), ()),
               CRSSample("opendialkg", "2", 1, ("I like Ida Marlowe and Bo Quint",), ("Ida Marlowe", "Bo Quint"), ()),
               CRSSample("opendialkg", "3", 1, ("Gary Fenwick is fine",), (), ())]
    mapper = TitleMapper(catalog, np.ones(len(catalog)))
    read = rules_reader(finder, catalog.genres, 2021)
    r = measure(samples, read, mapper, catalog, people)
    # found: Gary (x2), Ida; annotated: Gary, Ida, Bo Quint (unknown to the index)
    assert r["people"] == {"precision": round(2 / 3, 4), "recall": round(2 / 3, 4), "tp": 2, "predicted": 3, "labels": 3}
    assert r["titles"]["predicted"] == 0          # "Gary" and "Marlowe ..." inside names are no titles
    assert "people" not in measure(samples, read, mapper, catalog)
    assert r["sources"] == {"rules": 3} and r["s_per_message"] >= 0


class _ScriptedChat:
    """``invoke`` returns the given replies in turn, like a chat model."""

    def __init__(self, replies):
        self.replies = list(replies)

    def invoke(self, messages, **kw):
        from langchain_core.messages import AIMessage
        return AIMessage(self.replies.pop(0))


def test_bench_scores_the_llm_reader_with_its_outcomes(finder, catalog):
    """The LLM path is scored like the rules: a title the LLM names is resolved through the finder
    as the manager does, a broken answer is repaired once,
    and an answer that stays broken falls back to the rules; each outcome is counted."""
    import numpy as np

    from dialog.eval.bench_mentions import llm_reader, measure
    from dialog.understand import LLMUnderstander
    from retrieval.crs_data import CRSSample, TitleMapper
    samples = [CRSSample("redial", "1", 1, ("have you seen glass ribbon? loved it",), ("Glass Ribbon (1994)",), ()),
               CRSSample("redial", "2", 1, ("I liked Red Orchard (1988)",), ("Red Orchard (1988)",), ()),
               CRSSample("redial", "3", 1, ("Something like Go (1999)",), ("Go (1999)",), ())]
    chat = _ScriptedChat(['{"liked_titles": ["Glass Ribbon"]}',
                          "not json", '{"liked_titles": ["Red Orchard"]}',
                          "still not json", "nor this"])
    und = LLMUnderstander(chat, finder, list(catalog.genres))
    r = measure(samples, llm_reader(und), TitleMapper(catalog, np.ones(len(catalog))), catalog)
    assert r["sources"] == {"llm": 1, "llm-repaired": 1, "rules": 1}
    assert r["titles"] == {"precision": 1.0, "recall": 1.0, "tp": 3, "predicted": 3, "labels": 3}
    assert not chat.replies
