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

CF_TABLE = "cf_item_embeds.npy"  # saved next to a stage-2 checkpoint: the CF rows it was trained on


class ILMScorer:
    def __init__(self, model: ILMRecommender, n_recent: int = 3, batch_size: int = 8):
        self.model, self.n_recent, self.batch_size = model.eval(), n_recent, batch_size
        self._item_vecs: torch.Tensor | None = None

    @classmethod
    def from_checkpoint(cls, path, lm=None, tokenizer=None, text_embeds=None, **kwargs) -> "ILMScorer":
        """Load a stage-2 checkpoint (``training.ilm_stage2.save``) onto its base LLM.

        Args:
            lm, tokenizer: the base LLM already loaded (else loaded from the recorded name); its
                fingerprint must match the recorded one either way.
            text_embeds: the items' text embeddings, needed only for a UEM checkpoint.
        """
        from pathlib import Path

        from ilm.checkpoint import load_checkpoint, read_checkpoint_config
        from ilm.features import CFTable
        from ilm.lm import llm_fingerprint, load_llm
        from ilm.model import ItemLanguageModel
        from ilm.uem import UEMConfig, UEMEncoder

        path = Path(path)
        meta = read_checkpoint_config(path)
        base, extra = meta["base_llm"], meta["extra"]
        if lm is None:
            lm, tokenizer = load_llm(base["name"], quantize=meta["config"].get("quantize", "nf4"))
        fingerprint = llm_fingerprint(base["name"]) if base["name"] != "tiny" else base
        table = CFTable(np.load(path / CF_TABLE))
        d_lm = lm.get_input_embeddings().embedding_dim
        uem = None
        if extra.get("user_encoder") == "uem":
            cfg_uem = UEMConfig.from_dict(extra["uem"])
            uem = UEMEncoder(cfg_uem, meta["config"]["qformer"]["n_query"], d_lm)
        probe = torch.nn.Linear(d_lm, meta["config"]["qformer"]["d_embed"])
        modules = {"head": probe} | ({"uem": uem} if uem is not None else {})
        cfg, qformer, adapter = load_checkpoint(path, fingerprint, modules=modules)
        ilm = ItemLanguageModel(cfg, lm, tokenizer, qformer=qformer, adapter=adapter)
        model = ILMRecommender(ilm, table, extra.get("user_encoder", "qformer"), uem, text_embeds,
                               extra.get("history_len", 50))
        model.head.load_state_dict(probe.state_dict())
        return cls(model, **kwargs)

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
