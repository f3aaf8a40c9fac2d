"""Test doubles for the dialog tests: a scripted policy and a scripted chat model."""
from __future__ import annotations

from langchain_core.messages import AIMessageChunk

from dialog.policy import Action, RulePolicy
from dialog.state import DialogState
from dialog.understand import Understanding


class ScriptedPolicy:
    """Replays ``actions`` in order (then "recommend") in place of ``RulePolicy``."""

    def __init__(self, actions: list[str]):
        self.actions = list(actions)

    def next_action(self, state: DialogState, u: Understanding, has_history: bool) -> Action:
        kind = self.actions.pop(0) if self.actions else "recommend"
        if kind == "ask":
            return Action("ask", "scripted", question=RulePolicy.VAGUE_QUESTION)
        if kind == "explain":
            return Action("explain", "scripted", explain_ids=list(state.last_suggestions))
        return Action(kind, "scripted")


class ScriptedChat:
    """Streams one scripted text per call, a few characters at a time; records closed streams."""

    def __init__(self, texts):
        self.texts, self.calls, self.closed, self.prompts = list(texts), 0, 0, []

    def stream(self, messages, **kw):
        self.prompts.append(messages)
        text = self.texts[min(self.calls, len(self.texts) - 1)]
        self.calls += 1
        try:
            for i in range(0, len(text), 3):
                yield AIMessageChunk(content=text[i:i + 3])
        finally:
            self.closed += 1
