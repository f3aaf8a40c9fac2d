"""The whole recommender as a LangChain ``Runnable``: ``invoke``, ``stream`` and ``batch``.

Input: a message string, or ``{"text": ..., "state": <DialogState.to_dict()> | None, "user_id": int | None}``.
Output: ``{"reply", "action", "suggestions" (list of dicts), "state" (dict), "notice"}``; ``stream``
yields ``{"chunk": text}`` pieces as the reply is written (``{"retract": True}`` when the text streamed so
far is withdrawn because its draft failed the title check), then the output dict. A conversation is
carried by passing the returned ``state`` back in.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig

from dialog.manager import DialogManager, Turn
from dialog.reply import Queued, Retract
from dialog.state import DialogState


class RecommenderRunnable(Runnable):
    def __init__(self, manager: DialogManager):
        self.manager = manager

    def _parse(self, input: Any) -> tuple[DialogState, str]:
        if isinstance(input, str):
            return self.manager.new_state(), input
        if not isinstance(input, dict) or "text" not in input:
            raise TypeError("input must be a message string or a dict with 'text' (and optional 'state', 'user_id')")
        if input.get("state"):
            state = DialogState.from_dict(input["state"])
        else:
            state = self.manager.new_state(input.get("user_id"))
        return state, str(input["text"])

    @staticmethod
    def _output(turn: Turn) -> dict:
        return {"reply": turn.reply, "action": turn.action, "notice": turn.notice,
                "suggestions": [asdict(s) for s in turn.suggestions], "state": turn.state.to_dict()}

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> dict:
        state, text = self._parse(input)
        return self._call_with_config(lambda _: self._output(self.manager.respond(state, text)), input, config)

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[dict]:
        state, text = self._parse(input)
        for part in self.manager.stream(state, text):
            if isinstance(part, Turn):
                yield self._output(part)
            else:
                yield ({"retract": True} if isinstance(part, Retract) else {"queued": True}
                       if isinstance(part, Queued) else {"chunk": part})

    def batch(self, inputs: list, config=None, *, return_exceptions: bool = False, **kwargs: Any) -> list:
        # One manager holds per-turn caches, so a batch runs its inputs one after another.
        out = []
        for x in inputs:
            try:
                out.append(self.invoke(x))
            except Exception as e:
                if not return_exceptions:
                    raise
                out.append(e)
        return out
