"""People index: credits from the two ml-100k files and tags, names found in messages, file round trip."""
import itertools
import json
import time

import numpy as np
import pandas as pd
import pytest

from retrieval.catalog import Catalog
from retrieval.people import Credit, PeopleConfig, PeopleIndex, name_key

# item_id -> (title, imdb id as the catalogue stores it, tags)
ITEMS = [
    ("Silver Harbour", "0100001", ["stella verne", "harbour"]),
    ("Night Lantern", "100002", []),           # no leading zero: ids are compared as integers
    ("Paper Comets", "0100003", []),
    ("Dry Season", "0100004", []),
    ("Glass Orchard", "0100005", ["marco quill", "jane nobody", "zoe kastner"]),
    ("Quiet Valley", None, []),
]

CLAYRS = [
    {"movielens_id": "101", "imdb_id": "0100001", "title": "Silver Harbour", "year": "1990",
     "directors": "Stella Verne",
     "cast": "Amélie Duvall, Tom Brandt, Marco Quill, Rosa O'Marren, Extra Four, Extra Five, "
             "Extra Six, Extra Seven, Extra Eight, Extra Nine"},
    {"movielens_id": "102", "imdb_id": "0100002", "title": "Night Lantern", "year": "1991",
     "directors": "Stella Verne, Jonas Halloway, Lu Kai",
     "cast": "Zoë Kastner, Brandt Kessler Roe, Mary Ann Lee, Ann Lee"},
    {"movielens_id": "199", "imdb_id": "0999999", "title": "Elsewhere", "year": "1992",
     "directors": "Nobody Here", "cast": ""},
]

DETAILS = [
    ("103", "http://www.imdb.com/title/tt0100003/?ref_=fn_al_tt_1", "['Ada Marlow']",
     "['Marco Quill', 'Stella Verne', 'Rosa OMarren', 'Halloway Brooks']"),
    ("104", "http://www.imdb.com/title/tt0100004/?ref_=fn_al_tt_1", "['Marco Quill', 'Ben Marlow', 'Ivy Stone']",
     "['Dana Fielding']"),
    ("105", "http://www.imdb.com/title/tt0100005/?ref_=fn_al_tt_1", "['nan']", "['Dana Fielding']"),
    ("101", "http://www.imdb.com/title/tt0100001/?ref_=fn_al_tt_1", "['Stella Verne']", "['Amelie Duvall']"),
    ("107", "http://www.imdb.com/title/tt0555555/?ref_=fn_al_tt_1", "['Ghost Director']", "['Ghost Actor']"),
    ("108", "http://www.imdb.com/title/tt0100003/?ref_=fn_al_tt_1", "['broken", "not a list"),
]


def make_catalog(name="ml-latest-small", movielens_ids=None) -> Catalog:
    n = len(ITEMS)
    items = pd.DataFrame({
        "item_id": np.arange(n, dtype=np.int64),
        "movielens_id": np.asarray(movielens_ids or range(1, n + 1), dtype=np.int64),
        "title": [t for t, _, _ in ITEMS],
        "year": np.full(n, np.nan),
        "genres": [["Drama"] for _ in ITEMS],
        "tags": [list(tags) for _, _, tags in ITEMS],
        "imdb_id": [imdb for _, imdb, _ in ITEMS],
        "description": ["" for _ in ITEMS],
        "text": [t for t, _, _ in ITEMS],
        "alt_titles": [[] for _ in ITEMS],
    })
    return Catalog(name=name, items=items)


def write_sources(root, clayrs=CLAYRS, details=DETAILS):
    (root / "ml-100k_clayrs").mkdir(parents=True)
    (root / "ml-100k_clayrs" / "items_info.json").write_text(json.dumps(clayrs), encoding="utf-8")
    (root / "ml-100k_imdb-details").mkdir(parents=True)
    pd.DataFrame(details, columns=["movie_id", "movie_url", "director", "cast"]).assign(
        description="a plot").to_csv(root / "ml-100k_imdb-details" / "movielens100k_details.csv", index=False)
    return root


@pytest.fixture
def index(tmp_path) -> PeopleIndex:
    return PeopleIndex.build(make_catalog(), write_sources(tmp_path / "movie-descriptions"))


def names_in(index, text, **kw):
    return [m.person for m in index.find(text, **kw)]


def test_name_key_folds_case_accents_and_apostrophes():
    assert name_key("Amélie DUVALL") == name_key("amelie duvall") == "amelie duvall"
    assert name_key("Rosa O'Marren") == name_key("Rosa OMarren") == "rosa omarren"
    assert name_key("R. Lee-Ermey") == "r lee ermey"


def test_build_reads_both_files_and_joins_on_imdb_ids(index):
    assert index.roles("Stella Verne", 0) == ["director"]
    assert index.roles("Stella Verne", 1) == ["director"]      # "100002" in the catalogue, "0100002" in ClayRS
    assert index.roles("Stella Verne", 2) == ["cast"]          # from the details CSV only
    assert index.roles("Ada Marlow", 2) == ["director"]
    # the same credit from both files keeps both sources; spellings merge under ClayRS's
    assert [c.sources for c in index.credits("Stella Verne") if c.item_id == 0] == [("clayrs", "imdb-details")]
    assert "Rosa O'Marren" in index.people and "Rosa OMarren" not in index.people
    assert index.items("Rosa OMarren") == [2, 0]               # billed 3rd in 2, 4th in 0
    # unjoined rows, "nan", bad rows and cast beyond max_cast are not in the index
    for absent in ("Nobody Here", "Ghost Director", "Ghost Actor", "nan", "Extra Eight", "Extra Nine"):
        assert absent not in index.people
    assert "Extra Seven" in index.people                       # the 8th billed lead
    assert index.report["imdb-details"]["bad_rows"] == 1
    assert index.report["imdb-details"]["joined"] == 4
    clayrs = index.report["clayrs"]
    assert (clayrs["read"], clayrs["records"], clayrs["joined"]) == (True, 3, 2)


def test_max_cast_is_configurable(tmp_path):
    idx = PeopleIndex.build(make_catalog(), write_sources(tmp_path), PeopleConfig(max_cast=2))
    assert "Tom Brandt" in idx.people and "Extra Four" not in idx.people
    assert idx.roles("Marco Quill", 0) == [] and idx.items("Marco Quill") == [3, 2, 4]


def test_tags_attach_known_names_only(index):
    assert index.roles("Marco Quill", 4) == ["tag"]
    assert index.roles("Zoë Kastner", 4) == ["tag"]            # "zoe kastner" tag, accent-insensitive
    assert index.roles("Stella Verne", 0) == ["director"]      # already credited: no extra tag credit
    assert "jane nobody" not in {name_key(p) for p in index.people}
    assert index.report["tags"]["credits"] == 2


def test_items_ordered_by_role_then_billing_then_id(index):
    # Marco Quill: directs 3, billed 1st in 2, 3rd in 0, tagged on 4
    assert index.items("Marco Quill") == [3, 2, 0, 4]
    assert index.items("marco quill", roles={"cast"}) == [2, 0]
    assert index.items("Marco Quill", roles={"director", "tag"}) == [3, 4]
    assert index.items("Stella Verne") == [0, 1, 2]
    assert index.items("Someone Unknown") == [] and index.roles("Someone Unknown", 0) == []


def test_find_full_names_case_and_accent_insensitive(index):
    text = "anything with amelie duvall or ZOE KASTNER?"
    found = index.find(text)
    assert [m.person for m in found] == ["Amélie Duvall", "Zoë Kastner"]
    assert [text[m.start:m.end] for m in found] == ["amelie duvall", "ZOE KASTNER"]
    assert found[1].items == index.items("Zoë Kastner") == [1, 4]
    assert names_in(index, "Movies directed by Stella Verne please") == ["Stella Verne"]


def test_find_possessives_and_apostrophes(index):
    text = "I loved Stella Verne's films and Rosa O’Marren's acting"
    found = index.find(text)
    assert [m.person for m in found] == ["Stella Verne", "Rosa O'Marren"]
    assert [text[m.start:m.end] for m in found] == ["Stella Verne", "Rosa O’Marren"]


def test_surname_alone_for_a_unique_capitalised_director(index):
    text = "Anything by Verne? Halloway's are too slow"
    found = index.find(text)
    assert [text[m.start:m.end] for m in found] == ["Verne"]
    assert found[0].person == "Stella Verne" and found[0].items == [0, 1, 2]
    assert names_in(index, "Quill's debut") == ["Marco Quill"]


@pytest.mark.parametrize("text", [
    "anything by verne",           # not capitalised
    "Something from Marlow",       # two directors called Marlow
    "Stone, please",               # a common English word
    "What did Kai make?",          # shorter than 5 letters
    "Halloway, please",            # also a first name (Halloway Brooks)
    "Brandt films",                # a cast member's surname, not a director's
    "Stella, what do you like?",   # a first name alone
])
def test_surname_alone_rejected(index, text):
    assert index.find(text) == []


def test_surname_rules_follow_the_arguments(index, tmp_path):
    assert names_in(index, "Stone, please", common_words=set()) == ["Ivy Stone"]
    assert names_in(index, "Verne, please", common_words={"verne"}) == []
    lenient = PeopleIndex.build(make_catalog(), write_sources(tmp_path / "d"),
                                PeopleConfig(reject_first_name_surnames=False))
    assert names_in(lenient, "Halloway, please") == ["Jonas Halloway"]


def test_longest_match_wins_without_overlaps(index):
    assert names_in(index, "Mary Ann Lee was great") == ["Mary Ann Lee"]
    assert names_in(index, "and Ann Lee too") == ["Ann Lee"]
    text = "Tom Brandt Kessler Roe"     # "Tom Brandt" and "Brandt Kessler Roe" overlap: the longer wins
    found = index.find(text)
    assert [(m.person, text[m.start:m.end]) for m in found] == [("Brandt Kessler Roe", "Brandt Kessler Roe")]
    many = index.find("Stella Verne, Marco Quill and Zoe Kastner; also Verne")
    assert [m.person for m in many] == ["Stella Verne", "Marco Quill", "Zoë Kastner", "Stella Verne"]
    assert all(a.end <= b.start for a, b in zip(many, many[1:]))


def test_names_split_by_a_comma_do_not_match(index):
    assert names_in(index, "mary, ann lee") == ["Ann Lee"]


def test_coverage_counts(index):
    cov = index.coverage()
    assert cov["items"] == 6 and cov["items_with_person"] == 5 and cov["items_with_director"] == 4
    assert cov["share_with_person"] == round(5 / 6, 4)
    assert cov["directors"] == 7  # Verne, Halloway, Kai, the two Marlows, Quill, Stone
    assert cov["people"] == len(index.people)
    assert cov["credits_by_source"]["tags"] == 2 and cov["items_by_source"]["tags"] == 1
    assert cov["items_by_source"]["clayrs"] == 2 and cov["items_by_source"]["imdb-details"] == 4


def test_ml100k_catalog_joins_on_its_own_ids_and_skips_misscraped_rows(tmp_path):
    details = DETAILS + [("102", "http://www.imdb.com/title/tt0777777/", "['Roger Critic']", "['Gene Critic']")]
    catalog = make_catalog("ml-100k", movielens_ids=[101, 102, 103, 104, 105, 106])
    idx = PeopleIndex.build(catalog, write_sources(tmp_path, details=details))
    assert idx.items("Stella Verne") == [0, 1, 2]
    assert "Roger Critic" not in idx.people and idx.report["imdb-details"]["url_disagrees"] == 1


def test_missing_files_give_an_empty_working_index(tmp_path):
    idx = PeopleIndex.build(make_catalog(), tmp_path / "nothing-here")
    assert idx.people == [] and idx.find("Stella Verne, Verne") == [] and idx.items("Stella Verne") == []
    cov = idx.coverage()
    assert cov["people"] == 0 and cov["items_with_person"] == 0 and cov["share_with_person"] == 0.0
    assert idx.report["clayrs"]["read"] is False and idx.report["imdb-details"]["read"] is False


def test_save_load_round_trip(index, tmp_path):
    path = tmp_path / "out" / "people.json"
    index.save(path)
    loaded = PeopleIndex.load(path)
    assert loaded.to_dict() == index.to_dict()
    assert loaded.people == index.people and loaded.coverage() == index.coverage()
    text = "Verne's films with amelie duvall"
    assert loaded.find(text) == index.find(text) and len(loaded.find(text)) == 2
    assert loaded.credits("Stella Verne")[0] == Credit(0, "director", 0, ("clayrs", "imdb-details"))


@pytest.mark.parametrize("change", [{"version": 99}, {"format": "something-else"}])
def test_load_refuses_another_format_or_version(index, tmp_path, change):
    path = tmp_path / "people.json"
    index.save(path)
    path.write_text(json.dumps({**json.loads(path.read_text(encoding="utf-8")), **change}), encoding="utf-8")
    with pytest.raises(ValueError, match="people index"):
        PeopleIndex.load(path)


def test_find_is_fast_with_twenty_thousand_names():
    syllables = ["ba", "ce", "di", "fo", "gu", "ha", "je", "ki", "lo", "mu", "na", "pe"]
    firsts = [(a + b).capitalize() for a, b in itertools.product(syllables, syllables)]
    lasts = [(a + b + c).capitalize() for a, b, c in itertools.product(syllables[:6], syllables, syllables[:2])]
    names = {}
    credits = {}
    for i, (f, last) in enumerate((f, last) for f in firsts for last in lasts):
        key = name_key(f"{f} {last}")
        names[key] = f"{f} {last}"
        credits[key] = [Credit(i % 500, "director" if i % 7 == 0 else "cast", i % 8, ("clayrs",))]
    assert len(names) >= 20_000
    idx = PeopleIndex(names, credits, 500, "synthetic")
    some = list(names.values())
    text = (f"Hi! I watched something with {some[10]} yesterday, and {some[5000].lower()} was in it too. "
            f"Could you suggest films like that, maybe by {some[19999]}? Not too long, please, and no horror; "
            "something light for a Friday evening with friends, ideally from the nineties or a bit later.")
    assert 250 <= len(text) <= 350
    assert len(idx.find(text)) == 3
    t0 = time.perf_counter()
    for _ in range(200):
        idx.find(text)
    assert time.perf_counter() - t0 < 1.0
