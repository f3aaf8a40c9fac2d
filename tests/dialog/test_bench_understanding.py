"""The understanding benchmark's scoring: gold and predictions reduced to the same fields, titles and
positions to catalogue items; an LLM path through a scripted chat model."""
import json

import pytest

from dialog.eval.bench_understanding import FIELDS, GOLD, gold_fields, load_gold, predicted_fields, run, score
from dialog.understand import LLMUnderstander, TitleFinder, parse_message


class ScriptedChat:
    """Returns the given replies in turn, like a chat model's ``invoke``."""

    def __init__(self, replies):
        self.replies, self.seen = list(replies), []

    def invoke(self, messages, **kw):
        from langchain_core.messages import AIMessage
        self.seen.append(messages)
        return AIMessage(self.replies.pop(0))


@pytest.fixture
def finder(resources):
    return TitleFinder(resources.titles)


def test_the_shipped_gold_sets_load_and_label_only_known_fields():
    cases = load_gold(GOLD)
    assert len(cases) >= 40
    dev = load_gold(GOLD.with_name("understanding_dev.jsonl"))
    assert not {c["text"] for c in dev} & {c["text"] for c in cases}       # prompt work never sees the 40
    cases = cases + dev
    keys = {"text", "last", "include", "exclude", "year_min", "year_max", "liked", "disliked", "seen",
            "like_refs", "dislike_refs", "seen_refs", "explain", "kids"}
    for c in cases:
        assert set(c) <= keys and c["text"].strip()
        for r in c.get("like_refs", []) + c.get("dislike_refs", []) + c.get("seen_refs", []):
            assert 1 <= r <= len(c["last"])


def test_positions_and_titles_score_alike_and_invented_fields_are_errors(finder, resources):
    genres = resources.catalog.genres
    case = {"text": "I've seen the second one, and I loved Heat.", "last": ["Alien", "Jaws"],
            "seen_refs": [2], "liked": ["Heat"]}
    gold = gold_fields(case, finder)
    assert gold["seen"] == {finder.resolve("Jaws").item_id} and gold["liked"] == {finder.resolve("Heat").item_id}
    u = parse_message(case["text"], finder, genres, 2)
    last = [finder.resolve(t).item_id for t in case["last"]]
    pred = predicted_fields(u, last)
    assert score([gold], [pred])["all_fields_right"] == 1.0
    pred["include"] = {"Comedy"}
    pred["years"] = (1990, None)
    s = score([gold], [pred])
    assert s["field_accuracy"]["include"] == 0.0 and s["field_accuracy"]["years"] == 0.0
    assert sorted(f for _, f in s["wrong"]) == ["include", "years"] and len(FIELDS) == 8
    pred["years"] = None, None
    assert score([{**gold, "years": (2010, None)}], [{**pred, "years": (2011, None)}])["field_accuracy"]["years"] == 1.0
    with pytest.raises(ValueError, match="not in the catalogue"):
        gold_fields({"text": "x", "liked": ["Zzyzx Road Nowhere"]}, finder)


def test_run_compares_rules_and_an_llm_path(finder, resources):
    genres = resources.catalog.genres
    cases = [{"text": "A comedy from the 90s please.", "include": ["Comedy"], "year_min": 1990, "year_max": 1999},
             {"text": "no horror", "exclude": ["Horror"]}]
    good = json.dumps({"include_genres": ["Comedy"], "year_min": 1990, "year_max": 1999})
    wrong = json.dumps({"include_genres": ["Horror"]})       # valid JSON, wrong reading
    und = LLMUnderstander(ScriptedChat([good, wrong]), finder, genres)
    out = run(cases, finder, genres, und, progress=False)
    assert out["rules"]["all_fields_right"] == 1.0
    assert out["llm"]["field_accuracy"]["years"] == 1.0 and out["llm"]["field_accuracy"]["exclude"] == 0.5
    assert out["llm"]["all_fields_right"] == 0.5 and out["llm"]["sources"] == {"llm": 2}
    # what the LLM said is kept, case by case, for reading the errors
    assert [len(log) for log in out["llm"]["logs"]] == [2, 2] and out["rules"]["logs"] == [[], []]
    assert "Comedy" in out["llm"]["logs"][0][0] and out["llm"]["logs"][0][1].endswith("JSON accepted")


def test_the_extraction_prompt_keeps_its_system_text_fixed(finder, resources):
    """The system text must not change from turn to turn, or its cached keys/values go unused."""
    chat = ScriptedChat(['{"refer_to": [{"position": 2, "feedback": "like"}]}', '{}'])
    und = LLMUnderstander(chat, finder, resources.catalog.genres)
    u, _ = und.understand("the second one please", ["Heat", "Jaws"])
    und.understand("a comedy", [])
    assert u.like_refs == [1]
    (sys1, user1), (sys2, user2) = chat.seen
    assert sys1.content == sys2.content and "Heat" not in sys1.content
    assert user1.content == "Last suggestions: 1. Heat; 2. Jaws\nMessage: the second one please"
    assert user2.content.startswith("Last suggestions: none\n")
