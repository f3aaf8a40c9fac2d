"""The recommenders a scripted evaluation compares, behind one small interface:
``start(user_id) -> state`` and ``turn(state, text) -> SystemTurn`` (a ranked top-10 list; the
first ``k`` are what the person sees).

  popularity  the most popular movies not seen or shown yet; ignores what the person says.
  text        text retrieval only: all the person's messages so far, embedded, nearest movies.
  llm_only    the LLM reads the conversation and names movies freely; the titles are mapped to
              the catalogue through the title lookup (unmatched names are dropped).
  full        the dialog manager: understanding, state, hybrid retrieval, fitted ranker.
All four exclude what the user has seen (their history) and what was already shown.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class SystemTurn:
    state: object
    ranked: list[int]
    reply: str
    action: str
    latency_s: float


@dataclass
class SimpleState:
    user_id: int | None
    seen: set[int] = field(default_factory=set)
    shown: list[int] = field(default_factory=list)
    messages: list[dict] = field(default_factory=list)


def _start(res, user_id):
    seen = set() if user_id is None else {int(i) for i in res.user_history(user_id)}
    return SimpleState(user_id, seen)


class PopularitySystem:
    name = "popularity"

    def __init__(self, res, k: int = 5):
        self.res, self.k = res, k
        self.order = np.argsort(-np.asarray(res.popularity), kind="stable")

    def start(self, user_id):
        return _start(self.res, user_id)

    def turn(self, state: SimpleState, text: str) -> SystemTurn:
        t0 = time.perf_counter()
        s = SimpleState(state.user_id, set(state.seen), list(state.shown), state.messages + [{"role": "user", "text": text}])
        skip = s.seen | set(s.shown)
        ranked = [int(i) for i in self.order[:len(skip) + 10] if int(i) not in skip][:10]
        s.shown += ranked[:self.k]
        return SystemTurn(s, ranked, "", "recommend", time.perf_counter() - t0)


class TextSystem:
    name = "text"

    def __init__(self, res, k: int = 5):
        self.res, self.k = res, k

    def start(self, user_id):
        return _start(self.res, user_id)

    def turn(self, state: SimpleState, text: str) -> SystemTurn:
        t0 = time.perf_counter()
        s = SimpleState(state.user_id, set(state.seen), list(state.shown), state.messages + [{"role": "user", "text": text}])
        query = " ".join(m["text"] for m in s.messages if m["role"] == "user")
        q = np.asarray(self.res.encode([query]), dtype=np.float32)[0]
        hits = self.res.text_index.search(q, 10, exclude_ids=s.seen | set(s.shown))
        ranked = [int(i) for i, _ in hits]
        s.shown += ranked[:self.k]
        return SystemTurn(s, ranked, "", "recommend", time.perf_counter() - t0)


class FullSystem:
    """The dialog manager; ``name`` tells variants apart in a report ("full", "full_ilm")."""

    def __init__(self, manager, name: str = "full"):
        self.manager = manager
        self.name = name

    def start(self, user_id):
        return self.manager.new_state(user_id)

    def turn(self, state, text: str) -> SystemTurn:
        t0 = time.perf_counter()
        t = self.manager.respond(state, text)
        ranked = [s.item_id for s in t.suggestions] if t.action in ("recommend", "refine") else []
        if ranked:
            extra = [c["item_id"] for c in t.candidates if c["item_id"] not in set(ranked)]
            ranked = (ranked + extra)[:10]
        return SystemTurn(t.state, ranked, t.reply, t.action, time.perf_counter() - t0)


LLM_ONLY_PROMPT = ("You are a movie recommender. Based on the conversation, recommend {k} movies the person "
                   "has not mentioned. Reply with one movie per line as 'Title (year)', nothing else.")


class LLMOnlySystem:
    """The LLM recommends freely; its titles are mapped to the catalogue."""
    name = "llm_only"

    def __init__(self, res, chat, k: int = 5, max_new_tokens: int = 70):
        self.res, self.chat, self.k = res, chat, k
        self.max_new_tokens = max_new_tokens
        self.unmatched = 0
        self.named = 0

    def start(self, user_id):
        return _start(self.res, user_id)

    def turn(self, state: SimpleState, text: str) -> SystemTurn:
        from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
        t0 = time.perf_counter()
        s = SimpleState(state.user_id, set(state.seen), list(state.shown), state.messages + [{"role": "user", "text": text}])
        msgs = [SystemMessage(LLM_ONLY_PROMPT.format(k=self.k))]
        for m in s.messages[-6:]:
            msgs.append(HumanMessage(m["text"]) if m["role"] == "user" else AIMessage(m["text"]))
        out = self.chat.invoke(msgs, max_new_tokens=self.max_new_tokens)
        reply = getattr(out, "content", str(out))
        ranked = []
        skip = s.seen | set(s.shown)
        for line in reply.splitlines():
            name = re.sub(r"^\s*(?:\d+[.)]|[-*•])\s*", "", line).strip(" *\"'")
            name = re.split(r"\s+[-–:]\s+", name)[0]
            if len(name) < 2:
                continue
            self.named += 1
            r = self.res.titles.resolve(name)
            item = r.item.item_id if r.item else (r.candidates[0].item_id if r.candidates else None)
            if item is None:
                self.unmatched += 1
                continue
            if item not in skip and item not in ranked:
                ranked.append(int(item))
        ranked = ranked[:10]
        s.shown += ranked[:self.k]
        s.messages.append({"role": "assistant", "text": reply})
        return SystemTurn(s, ranked, reply, "recommend", time.perf_counter() - t0)
