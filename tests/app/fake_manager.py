"""A deterministic stand-in for ``dialog.manager.DialogManager`` with the same interface, over a
tiny real ``Catalog``: suggests the first movies not yet shown, seen, liked or disliked, so the
next suggestions after "not for me" always differ. ``"fail"`` in a message makes it raise."""
from __future__ import annotations

import re
import time

from dialog.manager import Suggestion, TraceEntry, Turn
from dialog.reply import QUEUED, RETRACT
from dialog.state import DialogState


class FakeManager:
    def __init__(self, catalog, k: int = 3, delay: float = 0.0):
        self.catalog = catalog
        self.k = k
        self.delay = delay

    def new_state(self, user_id=None) -> DialogState:
        return DialogState(user_id=user_id)

    def user_history(self, user_id: int, n: int = 10) -> list[str]:
        if not 1 <= int(user_id) <= 12:
            raise KeyError(f"user {user_id} is not in this data set (known ids 1..12, 12 users)")
        return [self.catalog.display(i) for i in range(int(user_id) % 5, int(user_id) % 5 + 4)][:n]

    def _suggest(self, state: DialogState, text: str) -> Turn:
        excluded = state.excluded()
        pool = [i for i in range(len(self.catalog)) if i not in excluded]
        picked = pool[: self.k]
        rows = [self.catalog.item(i) for i in picked]
        sugg = [Suggestion(int(r["item_id"]), int(r["movielens_id"]), r["title"],
                           None if r["year"] != r["year"] else int(r["year"]), list(r["genres"]),
                           r["description"] or f"A film about {r['title']}.", f"Because you said: {text[:30]}",
                           1.0 - 0.1 * j, {"cf": 0.5 - 0.1 * j, "text": 0.3, "ilm": 0.2})
                for j, r in enumerate(rows)]
        state.shown += picked
        state.last_suggestions = picked
        trace = [TraceEntry("retrieve", {"query": text[:40]}, len(pool), "hybrid search", 1.5),
                 TraceEntry("rank", {"k": self.k}, len(picked), "ranked", 0.4)]
        cands = [{"item_id": i, "title": self.catalog.display(i), "cf": 0.1} for i in pool[:10]]
        return Turn(state, f"Here are some ideas for “{text}”.", sugg, "recommend", trace, cands, None)

    def respond(self, state: DialogState, text: str) -> Turn:
        if "fail" in text:
            raise RuntimeError("the fake manager was asked to fail")
        new = state.copy()
        new.turn += 1
        new.messages.append({"role": "user", "text": text})
        m = re.search(r"after (\d{4})", text)
        if m:
            new.constraints.year_min = int(m.group(1))
        turn = self._suggest(new, text)
        new.messages.append({"role": "assistant", "text": turn.reply})
        return turn

    def stream(self, state: DialogState, text: str):
        turn = self.respond(state, text)
        if "draft" in text:      # a streamed draft that fails its check and is withdrawn
            yield "Try Casablanca! "
            yield RETRACT
        if "queued" in text:     # the LLM is busy with another person's reply first
            yield QUEUED
        for word in turn.reply.split(" "):
            if self.delay:
                time.sleep(self.delay)
            yield word + " "
        yield turn

    def feedback(self, state: DialogState, item_id: int, kind: str) -> Turn:
        new = state.copy()
        new.turn += 1
        {"like": new.liked, "dislike": new.disliked, "seen": new.seen}[kind].append(int(item_id))
        if kind == "dislike":
            new.rejected.append(int(item_id))
        if kind == "like":
            return Turn(new, f"Noted, you like {self.catalog.display(item_id)}.", [], "acknowledge", [], [], None)
        return self._suggest(new, f"{kind} {item_id}")
