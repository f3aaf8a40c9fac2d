"""ILM scores for the dialog ranker: a user (history), the conversation so far, candidate items.

``ILMScorer.score_batch`` scores many users' candidates with one LLM pass per batch of users;
``ILMScorer.__call__(state, candidate_ids)`` is the ranker's hook (``dialog.tools.Toolbox``): the
person's liked movies are the history, their last messages the conversation.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ilm.rec import ILMRecommender
from ilm.tasks import collate, next_item_example


class ILMScorer:
    def __init__(self, model: ILMRecommender, n_recent: int = 3, batch_size: int = 8):
        self.model, self.n_recent, self.batch_size = model.eval(), n_recent, batch_size
        self._item_vecs: torch.Tensor | None = None

    @classmethod
    def from_checkpoint(cls, path, lm=None, tokenizer=None, text_embeds=None, **kwargs) -> ILMScorer:
        """Load a stage-2 checkpoint (``ILMRecommender.save_pretrained``) onto its base LLM.

        Args:
            lm, tokenizer: the base LLM already loaded (else loaded from the recorded name); it
                must be the recorded one either way (``ilm.checkpoint.BaseLLMMismatch``).
            text_embeds: the items' text embeddings, needed only for a UEM checkpoint.
            kwargs: ``n_recent``, ``batch_size``.
        """
        return cls(ILMRecommender.from_pretrained(path, lm, tokenizer, text_embeds), **kwargs)

    @property
    def item_vecs(self) -> torch.Tensor:
        if self._item_vecs is None:
            self._item_vecs = self.model.all_item_vectors()
        return self._item_vecs

    @torch.no_grad()
    def score_batch(self, histories: Sequence[Sequence[int]], candidates: Sequence[Sequence[int]],
                    conversations: Sequence[str] | None = None) -> list[np.ndarray]:
        """Per user, one score per candidate (cosine; higher is better).

        Args:
            histories: per user, item ids in time order (at least one each).
            candidates: per user, the item ids to score.
            conversations: per user, what they said so far (appended to the prompt), or None.
        """
        if len(histories) != len(candidates):
            raise ValueError(f"{len(histories)} histories but {len(candidates)} candidate lists")
        if any(len(h) == 0 for h in histories):
            raise ValueError("every user needs at least one history item for the ILM")
        conversations = conversations or [""] * len(histories)
        out = []
        for s in range(0, len(histories), self.batch_size):
            examples = []
            for h, text in zip(histories[s:s + self.batch_size], conversations[s:s + self.batch_size]):
                examples.append(next_item_example(np.asarray(h, dtype=np.int64), self.n_recent, said=text))
            batch = collate(examples, self.model.ilm.tokenizer, self.model.ilm.cfg.n_query,
                            self.model.user_encoder)
            out += self.model.score(batch, candidates[s:s + self.batch_size], self.item_vecs)
        return out

    def __call__(self, state, candidate_ids: Sequence[int]) -> np.ndarray:
        """The ranker hook. The history is what the person watched (``state.seen``, in order; a
        returning MovieLens user's ratings) followed by the movies they said they liked; zeros
        when there is neither."""
        history = history_of(state)
        if not history or not len(candidate_ids):
            return np.zeros(len(candidate_ids))
        said = " ".join(state.user_texts(last=2)) if hasattr(state, "user_texts") else ""
        return self.score_batch([history], [list(candidate_ids)], [said])[0]


def history_of(state) -> list[int]:
    """Watched items in order, then liked ones not among them (each once)."""
    if state is None:
        return []
    seen = [int(i) for i in getattr(state, "seen", []) or []]
    liked = [int(i) for i in getattr(state, "liked", []) or []]
    return list(dict.fromkeys(seen + liked))
