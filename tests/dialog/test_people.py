"""People in messages (dialog/understand/people.py) and through the manager, on the 20-movie
fixture with a hand-made people index: known names are found and answered from the index, title
readings inside a name are dropped, unknown names after a cue are said, not guessed."""
import dataclasses

import pytest

from dialog.manager import build_manager
from dialog.ranker import RankerWeights
from dialog.understand import Understanding
from dialog.understand.finder import TitleFinder
from dialog.understand.people import read_people
from dialog.understand.rules import parse_message
from retrieval.people import Credit, PeopleIndex, name_key

# invented people; fixture item ids: 3 Alien, 4 Aliens, 11 Heat, 16 Jaws, 17 Casablanca
PEOPLE = {"Ridley Vance": [(3, "director"), (4, "cast")], "Ava Lindqvist": [(16, "cast"), (17, "cast")],
          "Heat Miser": [(11, "cast")], "Pia Gupta": [(0, "cast")]}


def people_index(n_items):
    names = {name_key(n): n for n in PEOPLE}
    credits = {name_key(n): [Credit(i, role, k, ("tags",)) for k, (i, role) in enumerate(v)] for n, v in PEOPLE.items()}
    return PeopleIndex(names, credits, n_items, "ml-latest-small")


@pytest.fixture
def people_manager(resources):
    res = dataclasses.replace(resources, people=people_index(len(resources.catalog)))
    return build_manager(res, weights=RankerWeights.prior())


def understand(res, text, index):
    u = parse_message(text, TitleFinder(res.titles), res.catalog.genres, 0)
    return read_people(u, text, index)


def test_known_people_are_read_and_unknown_ones_after_a_cue_are_kept_apart(resources):
    idx = people_index(len(resources.catalog))
    u = understand(resources, "any films by ridley vance?", idx)
    assert u.people == ["Ridley Vance"] and u.unknown_people == []
    u = understand(resources, "Something starring Ava Lindqvist or with Bo Tran Kessler", idx)
    assert u.people == ["Ava Lindqvist"] and u.unknown_people == ["Bo Tran Kessler"]
    u = understand(resources, "A movie with The Rock would be fun, from Netflix maybe", idx)
    assert u.unknown_people == []                                        # not names: articles, a service
    u = understand(resources, "I want something with Heat Miser in it", idx)
    assert u.people == ["Heat Miser"] and not [t for t in u.titles if t.item_id == 11]   # not the movie Heat
    assert read_people(Understanding(), "films by Ridley Vance", None).unknown_people == ["Ridley Vance"]
    u = understand(resources, "I loved Up (2009), and anything with Pia Gupta", idx)
    assert u.people == ["Pia Gupta"] and [t.item_id for t in u.titles] == [18]     # "Up" is no word of "Gupta"


def test_the_manager_answers_from_the_index_and_explains_it(people_manager):
    turn = people_manager.respond(people_manager.new_state(), "What are some Ridley Vance movies?")
    assert turn.state.constraints.people == ["Ridley Vance"]
    ids = [s.item_id for s in turn.suggestions]
    assert {3, 4} <= set(ids)
    assert any("directed by Ridley Vance" in s.reason for s in turn.suggestions if s.item_id == 3)
    assert any("with Ridley Vance" in s.reason for s in turn.suggestions if s.item_id == 4)
    rank = [e for e in turn.trace if e.tool == "retrieve"][0]
    assert "people 2" in rank.summary
    assert turn.state.liked == []                       # asking about a person likes no movie
    assert "By or with: Ridley Vance" in turn.state.describe(people_manager.catalog)


def test_an_unknown_person_is_said_not_guessed(people_manager):
    turn = people_manager.respond(people_manager.new_state(), "Any movies by Zorbo Quintel?")
    assert "I don't know Zorbo Quintel's films" in turn.reply and turn.state.constraints.people == []


def test_a_later_person_replaces_the_earlier_one(people_manager):
    s = people_manager.respond(people_manager.new_state(), "films by Ridley Vance").state
    s = people_manager.respond(s, "now something with Ava Lindqvist").state
    assert s.constraints.people == ["Ava Lindqvist"]
