"""The ILM as a recommender: stage-2 losses and batched candidate scoring.

``ILMRecommender`` wraps an ``ItemLanguageModel`` with
  * a user encoder for ``<user>`` placeholders: the Q-Former over the history's CF embeddings
    ("qformer"), UEM soft prompts over the history's text embeddings ("uem"), or none when the
    history is written out as text ("text");
  * a next-item head: the LLM's state at the last prompt token, projected into the Q-Former's
    item space (``ItemQFormer.item_embed``) and compared by cosine with every candidate item. One
    LLM pass scores any number of candidates, which is what makes re-ranking 50 candidates per
    user affordable on a CPU; the item side needs only the small Q-Former.
The LLM's own loss (description, genre preference, conversation targets) is computed only at the
target positions, so the 150k-wide vocabulary projection never runs over prompt tokens.

``save_pretrained`` / ``from_pretrained`` write and read a stage-2 checkpoint: the ILM's part
(``ItemLanguageModel.save_pretrained``), the part ``rec`` (head, UEM encoder, user-encoder
settings) and the CF table the model reads (``cf_item_embeds.npy``).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ilm.checkpoint import prefixed, read_config, read_tensors, save_part, unprefixed, untracked_trainables
from ilm.features import CFTable
from ilm.model import ItemLanguageModel
from ilm.tasks import LLMBatch
from ilm.uem import UEMConfig, UEMEncoder

PART = "rec"                     # the checkpoint part (``ilm.checkpoint``) this class adds
CF_TABLE = "cf_item_embeds.npy"  # the CF rows the model was trained on; derived from the ratings,
                                 # so checkpoints stay outside the repo


def next_item_loss(user_vecs: torch.Tensor, item_vecs: torch.Tensor, targets: torch.Tensor,
                   temperature: float | torch.Tensor) -> torch.Tensor:
    """Sampled-softmax cross-entropy of each user's next item among the candidate items.

    Args:
        user_vecs: (B, D) and item_vecs: (N, D), both L2-normalised.
        targets: (B,) index of each user's next item in item_vecs.
    """
    return F.cross_entropy(user_vecs @ item_vecs.t() / temperature, targets)


def lm_target_loss(hidden: torch.Tensor, labels: torch.Tensor, lm_head: nn.Module) -> torch.Tensor:
    """Next-token cross-entropy at labelled positions only: hidden (B, T, d), labels (B, T)."""
    shifted = labels[:, 1:]
    keep = shifted != -100
    logits = lm_head(hidden[:, :-1][keep])  # (N, vocab)
    return F.cross_entropy(logits.float(), shifted[keep])


class ILMRecommender(nn.Module):
    def __init__(self, ilm: ItemLanguageModel, table: CFTable, user_encoder: str = "qformer",
                 uem: UEMEncoder | None = None, text_embeds: np.ndarray | None = None,
                 history_len: int = 50):
        super().__init__()
        if user_encoder == "uem" and (uem is None or text_embeds is None):
            raise ValueError("user_encoder='uem' needs a UEMEncoder and the items' text embeddings")
        self.ilm, self.table, self.user_encoder, self.history_len = ilm, table, user_encoder, history_len
        self.uem = uem
        self.text_embeds = None if text_embeds is None else torch.as_tensor(np.asarray(text_embeds, np.float32))
        d_lm = ilm.lm.get_input_embeddings().embedding_dim
        self.head = nn.Linear(d_lm, ilm.cfg.qformer.d_embed).to(ilm.adapter.proj.weight.device)

    # ---- pieces ----------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def to_device(self, device) -> ILMRecommender:
        """Move the trained parts (not the LLM, which its loader placed) and the CF table."""
        for module in (self.ilm.qformer, self.ilm.adapter, self.head, self.uem):
            if module is not None:
                module.to(device)
        self.table.embeds = self.table.embeds.to(device)
        if self.text_embeds is not None:
            self.text_embeds = self.text_embeds.to(device)
        return self

    def trainable(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def _user_inputs(self, histories: Sequence[np.ndarray]) -> dict:
        if not histories:
            return {}
        if self.user_encoder == "uem":
            feats, mask = CFTable(self.text_embeds).histories(histories, self.uem.cfg.max_len)
            return {"user_vectors": self.uem(feats, mask)}
        feats, mask = self.table.histories(histories, self.history_len)
        return {"user_cf_feats": feats, "user_cf_mask": mask}

    def splice_inputs(self, batch: LLMBatch) -> dict:
        """The keyword arguments of ``ItemLanguageModel.embed`` / ``generate`` for a batch."""
        cf = self._user_inputs(batch.histories)
        if batch.item_ids:
            cf["item_cf_feats"] = self.table.items(batch.item_ids)
        return cf

    def hidden(self, batch: LLMBatch) -> torch.Tensor:
        """(B, T, d_lm) the LLM's final (normed) hidden states on the spliced prompt."""
        cf = self.splice_inputs(batch)
        device = self.ilm.lm.get_input_embeddings().weight.device
        embeds = self.ilm.embed(batch.input_ids.to(device), **cf)
        decoder = self.ilm.lm.get_decoder()
        return decoder(inputs_embeds=embeds, attention_mask=batch.attention_mask.to(device)).last_hidden_state

    def user_vectors(self, hidden: torch.Tensor, last_prompt: torch.Tensor) -> torch.Tensor:
        """(B, d_embed) normalised next-item query of each row."""
        h = hidden[torch.arange(hidden.shape[0], device=hidden.device), last_prompt.to(hidden.device)]
        return F.normalize(self.head(h.float()), dim=-1)

    def item_vectors(self, item_ids) -> torch.Tensor:
        """(n, d_embed) normalised item vectors of the Q-Former (no LLM)."""
        return self.ilm.qformer.item_embed(self.table.items(item_ids))

    @torch.no_grad()
    def all_item_vectors(self, batch_size: int = 1024) -> torch.Tensor:
        out = [self.item_vectors(np.arange(s, min(s + batch_size, self.table.n_items)))
               for s in range(0, self.table.n_items, batch_size)]
        return torch.cat(out)

    # ---- stage 2 ----------------------------------------------------------------------------

    def losses(self, batch: LLMBatch, negatives: np.ndarray) -> dict[str, torch.Tensor]:
        """{"lm": ..., "next_item": ...} for the rows that have them.

        Args:
            negatives: item ids scored against every next_item row besides the batch's targets.
        """
        hidden = self.hidden(batch)
        parts = {}
        labels = batch.labels.to(hidden.device)
        if bool((labels[:, 1:] != -100).any()):
            parts["lm"] = lm_target_loss(hidden, labels, self.ilm.lm.get_output_embeddings())
        rows = torch.nonzero(batch.next_items >= 0).flatten()
        if len(rows):
            targets = batch.next_items[rows].numpy()
            cands, inverse = np.unique(np.concatenate([targets, negatives]), return_inverse=True)
            users = self.user_vectors(hidden[rows.to(hidden.device)], batch.last_prompt[rows])
            items = self.item_vectors(cands).to(users.device)
            target_idx = torch.as_tensor(inverse[:len(targets)], device=users.device)
            items = items.to(users.device)
            parts["next_item"] = next_item_loss(users, items, target_idx, self.ilm.qformer.temperature)
        return parts

    # ---- scoring ----------------------------------------------------------------------------

    @torch.no_grad()
    def score(self, batch: LLMBatch, candidates: Sequence[Sequence[int]],
              item_vecs: torch.Tensor | None = None) -> list[np.ndarray]:
        """Cosine score of each row's candidates (one LLM pass for the whole batch).

        Args:
            batch: next_item prompts (``tasks.next_item_example`` collated).
            candidates: per row, the item ids to score.
            item_vecs: optional precomputed ``all_item_vectors()``.
        """
        users = self.user_vectors(self.hidden(batch), batch.last_prompt)
        out = []
        for b, cands in enumerate(candidates):
            cands = np.asarray(cands, dtype=np.int64)
            vecs = item_vecs[cands] if item_vecs is not None else self.item_vectors(cands)
            out.append((vecs.to(users.device) @ users[b]).float().cpu().numpy())
        return out

    # ---- saving and loading ------------------------------------------------------------------

    def _own_state(self) -> dict[str, torch.Tensor]:
        state = prefixed("head", self.head.state_dict())
        return state | (prefixed("uem", self.uem.state_dict()) if self.uem is not None else {})

    def save_pretrained(self, path: str | Path, base_llm: dict | None = None,
                        extra: dict | None = None) -> Path:
        """Write everything that trains (the ILM's part, the head, UEM) and the CF table.

        Args:
            base_llm, extra: as in ``ItemLanguageModel.save_pretrained``.
        Raises:
            ValueError: a trainable parameter would not be saved.
        """
        own = self._own_state()
        lost = untracked_trainables(self, self.ilm.trained_state() | own)
        if lost:
            raise ValueError(f"trainable parameters the checkpoint would not hold: {lost[:5]}")
        self.ilm.save_pretrained(path, base_llm, extra)
        save_part(path, PART, own, {"user_encoder": self.user_encoder, "history_len": self.history_len,
                                    "uem": None if self.uem is None else asdict(self.uem.cfg)})
        np.save(Path(path) / CF_TABLE, self.table.embeds.cpu().numpy())
        return Path(path)

    @classmethod
    def from_pretrained(cls, path: str | Path, lm=None, tokenizer=None,
                        text_embeds: np.ndarray | None = None) -> ILMRecommender:
        """Rebuild a saved recommender (in eval mode) on its base LLM.

        Args:
            lm, tokenizer: as in ``ItemLanguageModel.from_pretrained``.
            text_embeds: the items' text embeddings, needed only when the user encoder is UEM.
        Raises:
            BaseLLMMismatch: as in ``ItemLanguageModel.from_pretrained``.
        """
        meta = read_config(path, PART)
        ilm = ItemLanguageModel.from_pretrained(path, lm, tokenizer)
        uem = None
        if meta["uem"] is not None:
            d_lm = ilm.lm.get_input_embeddings().embedding_dim
            uem = UEMEncoder(UEMConfig.from_dict(meta["uem"]), ilm.cfg.n_query, d_lm)
        model = cls(ilm, CFTable(np.load(Path(path) / CF_TABLE)), meta["user_encoder"], uem,
                    text_embeds, meta["history_len"])
        tensors = read_tensors(path, PART)
        unknown = set(tensors) - set(model._own_state())
        if unknown:
            raise KeyError(f"unexpected tensors in the '{PART}' part of {path}: {sorted(unknown)[:5]}")
        model.head.load_state_dict(unprefixed("head", tensors))
        if uem is not None:
            uem.load_state_dict(unprefixed("uem", tensors))
        return model.eval()
