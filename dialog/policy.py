"""The dialog policy: given the updated state and what the message asked for, the next action.

Actions: "notice" (nothing to act on: empty message, prompt injection without a request, start
over), "ask" (at most one clarifying question per conversation: the request is too vague to rank,
or the constraints contradict each other), "explain" (the person asked why), "refine" (new
suggestions after feedback on the last ones) and "recommend".

``RulePolicy`` is the product policy: ``next_action(state, understanding, has_history) -> Action``.
The manager takes any object with that method (the tests script one).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from dialog.state import DialogState
from dialog.understand import Understanding

ACTIONS = ("ask", "recommend", "explain", "refine", "notice")


@dataclass
class Action:
    kind: str
    why: str = ""
    question: str | None = None           # for "ask"
    explain_ids: list[int] = field(default_factory=list)

    def __post_init__(self):
        if self.kind not in ACTIONS:
            raise ValueError(f"unknown action {self.kind!r}; known: {ACTIONS}")


def knows_enough(state: DialogState, u: Understanding, has_history: bool) -> bool:
    """Is there anything to rank by: a returning user's history, likes, constraints or content?"""
    c = state.constraints
    return bool(has_history or state.liked or c.like_items or c.include_genres or c.moods
                or c.year_min is not None or c.year_max is not None or c.audience or c.exclude_genres
                or u.has_content() or any(_has_words(t) for t in state.user_texts()[:-1]))


def _has_words(text: str) -> bool:
    return len([w for w in text.split() if len(w) > 3]) >= 3


class RulePolicy:
    VAGUE_QUESTION = ("Happy to help! To pick well: is there a movie you loved recently, or a genre, "
                      "mood or decade you're in the mood for?")

    def next_action(self, state: DialogState, u: Understanding, has_history: bool) -> Action:
        if u.reset:
            return Action("notice", "start over")
        conflicts = state.constraints.conflicts()
        if conflicts and not state.asked_clarification:
            return Action("ask", "contradictory constraints",
                          question=f"You asked for {conflicts[0]}, which can't both hold. Which do you want?")
        if (u.wants_explanation or u.explain_refs) and state.last_suggestions and not (
                u.like_refs or u.dislike_refs or u.seen_refs or u.reject_all or u.include_genres
                or u.exclude_genres or u.year_min is not None or u.year_max is not None):
            refs = [state.last_suggestions[i] for i in u.explain_refs if i < len(state.last_suggestions)]
            refs += [m.item_id for m in u.titles if m.kind == "explain" and m.item_id in state.last_suggestions]
            return Action("explain", "asked why", explain_ids=list(dict.fromkeys(refs)) or list(state.last_suggestions))
        if u.injection and not u.has_content():
            return Action("notice", "prompt injection")
        if not knows_enough(state, u, has_history):
            if not state.asked_clarification:
                return Action("ask", "too vague to rank", question=self.VAGUE_QUESTION)
            return Action("recommend", "still vague after one question: popular picks")
        if state.last_suggestions and (u.like_refs or u.dislike_refs or u.seen_refs or u.reject_all):
            return Action("refine", "feedback on the last suggestions")
        return Action("recommend", "enough to rank")
