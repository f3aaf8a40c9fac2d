import json

import numpy as np
import pytest
from langchain_core.messages import AIMessage

from dialog.eval.simulator import (
    LLMSimulator,
    TargetFacts,
    TemplateSimulator,
    TerseSimulator,
    leaks_title,
    personas,
    run_conversation,
    sample_users,
)
from dialog.eval.systems import FullSystem, PopularitySystem, TextSystem
from dialog.manager import build_manager
from dialog.ranker import RankerWeights


@pytest.fixture
def facts(resources):
    return TargetFacts(resources.catalog, resources.text_embeds, resources.popularity)


@pytest.fixture
def people(resources):
    return personas(resources.split, np.flatnonzero(resources.split.test >= 0))


def test_leak_check_is_fuzzy_and_word_bounded():
    assert leaks_title("I want something like the matrix!", "The Matrix")
    assert leaks_title("godfather part ii was great", "The Godfather: Part II")
    assert leaks_title("Loved Up.", "Up") and not leaks_title("an uplifting one", "Up")
    assert not leaks_title("a heist movie from the 90s", "Heat")
    assert leaks_title("cite des enfants perdus", "The City of Lost Children", ["La Cité des enfants perdus"])


def test_simulator_never_names_the_target(resources, facts, people):
    sim = TemplateSimulator(facts, seed=0)
    rng = np.random.default_rng(0)
    for p in people:
        row = resources.catalog.items.iloc[p.target]
        msgs = [sim.opening(p).text]
        for turn in range(1, 5):
            shown = [int(i) for i in rng.choice(20, 5, replace=False) if i != p.target]
            msgs.append(sim.react(p, turn, shown, asked=turn == 2).text)
        for m in msgs:
            assert not leaks_title(m, row.title, list(row.alt_titles)), (row.title, m)


def test_simulator_accepts_the_target_and_reasons_consistently(resources, facts, people):
    sim = TemplateSimulator(facts)
    p = people[0]
    msg = sim.react(p, 1, [5, p.target], asked=False)
    assert msg.accepted and "second" in msg.text
    target_genres = set(resources.catalog.items.genres.iloc[p.target])
    wrong = [i for i in range(20) if i != p.target and not set(resources.catalog.items.genres.iloc[i]) & target_genres]
    text = sim.react(p, 1, wrong[:3], asked=False).text
    assert "not into" in text
    said = text.split("not into ")[1].split(".")[0]
    assert said not in {g.lower() for g in target_genres}


def test_terse_simulator_volunteers_no_hints(resources, facts, people):
    full, terse = TemplateSimulator(facts), TerseSimulator(facts)
    p = next(p for p in people if facts.year(p.target) and full.hints(p))
    opening = terse.opening(p).text
    genres = facts.genres(p.target)
    assert genres[0].lower() in opening and "loved" not in opening and "from the" not in opening
    assert not any(g.lower() in opening for g in genres[1:])                # one genre only
    assert len(opening) < len(full.opening(p).text)
    same_genre = [i for i in range(20) if i != p.target
                  and set(resources.catalog.items.genres.iloc[i]) <= set(resources.catalog.items.genres.iloc[p.target])]
    text = terse.react(p, 1, same_genre[:3], asked=False).text
    assert not any(h in text for h in full.hints(p))        # only the reason for rejecting
    assert text and not terse.react(p, 1, same_genre[:3], asked=False).accepted
    assert terse.react(p, 2, [p.target], asked=False).accepted
    answer = terse.react(p, 1, [], asked=True).text         # a question is still answered
    assert genres[0].lower() in answer.lower()


def test_simulated_conversation_replays_exactly(resources, facts, people, tmp_path):
    sim = TemplateSimulator(facts, seed=3)
    mgr = build_manager(resources, weights=RankerWeights.prior())
    a = run_conversation(FullSystem(mgr), sim, people[1], max_turns=4)
    assert len(a.messages) >= 2
    b = run_conversation(FullSystem(mgr), sim, people[1], max_turns=4)
    assert (a.messages, a.success_turn, a.final_list, a.leaks) == (b.messages, b.success_turn, b.final_list, b.leaks)
    # the recorded script (user messages, JSONL) replayed through a fresh manager gives the same lists
    script = tmp_path / "script.jsonl"
    script.write_text("\n".join(json.dumps(m) for m in a.messages if m["role"] == "user"))
    fresh = build_manager(resources, weights=RankerWeights.prior())
    state = fresh.new_state(a.user_id)
    lists = []
    for line in script.read_text().splitlines():
        t = fresh.respond(state, json.loads(line)["text"])
        state = t.state
        lists.append([s.item_id for s in t.suggestions])
    assert lists == [m["items"] for m in a.messages if m["role"] == "assistant"]


def test_baseline_systems_exclude_history_and_shown(resources, facts, people):
    sim = TemplateSimulator(facts)
    for system in (PopularitySystem(resources), TextSystem(resources)):
        p = people[2]
        conv = run_conversation(system, sim, p, max_turns=3)
        shown = [i for m in conv.messages if m["role"] == "assistant" for i in m["items"]]
        assert len(shown) == len(set(shown)) and not set(shown) & set(p.history)


def test_sample_users_is_seeded_and_excludes():
    class S:
        test = np.array([1, -1, 2, 3, 4, 5, 6])
    a = sample_users(S, 3, seed=1)
    assert a == sample_users(S, 3, seed=1) and 1 not in a
    assert not set(sample_users(S, 10, seed=1, exclude=set(a))) & set(a)


class LeakyChat:
    """Paraphrases by naming the target: the simulator must reject it and use the template."""
    def __init__(self, title):
        self.title, self.calls = title, 0

    def invoke(self, messages, **kw):
        self.calls += 1
        return AIMessage(f"Honestly I just want {self.title}.")


def test_llm_simulator_rejects_leaks_and_caches(resources, facts, people, tmp_path):
    p = people[0]
    chat = LeakyChat(resources.catalog.items.title.iloc[p.target])
    sim = LLMSimulator(facts, chat, tmp_path / "cache.json", seed=0)
    msg = sim.opening(p)
    assert msg.leaks >= 2 and msg.text == TemplateSimulator(facts, seed=0).opening(p).text
    sim.save_cache()
    again = LLMSimulator(facts, chat, tmp_path / "cache.json", seed=0)
    calls = chat.calls
    assert again.opening(p).text == msg.text and chat.calls == calls      # replayed from the cache
