"""UniSRec-style sequential recommendation (Hou et al. 2022, "Towards Universal Sequence
Representation Learning for Recommender Systems"): SASRec whose items are their text.

Owns the text item encoder and the model that uses it. Instead of one free embedding per item id,
an item's vector comes from its frozen text embedding (MiniLM, 384-d) through a mixture-of-experts
adapter with parametric whitening: expert k maps ``(x - b_k) W_k``, a softmax gate over ``x``
mixes the experts. Items that were rarely or never rated still get a vector from their text, next to
items with similar text, which is what the paper's "inductive" setting relies on for new items and
what lets a model fitted on MovieLens score items that only appear in conversations.

``with_ids=True`` adds a free id embedding to the text vector (the paper's "transductive"
setting). Everything else, the causal transformer, full-softmax training and the interface
(``fit``, ``score``, ``item_embeddings``, ``user_embeddings``, ``save``/``load``), is SASRec's
(``retrieval/sasrec.py``). The pre-training on several domains of the paper is not here: one
catalogue, one domain.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from retrieval.sasrec import SASRec, SASRecConfig, SASRecNet


@dataclass
class UniSRecConfig(SASRecConfig):
    n_experts: int = 8
    adapter_dropout: float = 0.2      # on the text embedding, before the experts
    with_ids: bool = False            # also a free id embedding per item (transductive)


class MoEAdapter(nn.Module):
    """(N, d_text) text embeddings -> (N, d) item vectors: a gated mixture of whitened linear maps."""

    def __init__(self, d_text: int, d: int, n_experts: int, dropout: float):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(n_experts, d_text))                # b_k
        self.weight = nn.Parameter(torch.randn(n_experts, d_text, d) * 0.02)    # W_k
        self.gate = nn.Linear(d_text, n_experts, bias=False)
        nn.init.normal_(self.gate.weight, std=0.02)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(x)
        experts = torch.einsum("nkt,ktd->nkd", x[:, None] - self.bias[None], self.weight)  # (N, K, d)
        gate = F.softmax(self.gate(x), dim=-1)                                            # (N, K)
        return (gate[..., None] * experts).sum(1)                                         # (N, d)


class UniSRecNet(SASRecNet):
    """SASRec's network with items embedded from their text (plus their id with ``with_ids``)."""

    def __init__(self, n_items: int, cfg: UniSRecConfig, text: torch.Tensor):
        super().__init__(n_items, cfg)
        if not cfg.with_ids:
            del self.item_emb
        self.with_ids = cfg.with_ids
        self.register_buffer("text", torch.as_tensor(text, dtype=torch.float32))      # (n_items, d_text)
        self.moe = MoEAdapter(self.text.shape[1], cfg.dim, cfg.n_experts, cfg.adapter_dropout)
        self._frozen: torch.Tensor | None = None   # the table in eval mode (the adapter is ~2 GFLOP)

    def train(self, mode: bool = True) -> UniSRecNet:
        if mode or self.training:                    # into training, or out of it: weights may change
            self._frozen = None                      # (or just did); eval() while in eval keeps it
        return super().train(mode)

    def _apply(self, fn, *args, **kwargs):
        self._frozen = None                          # .to(device) / dtype changes
        return super()._apply(fn, *args, **kwargs)

    def load_state_dict(self, *args, **kwargs):
        self._frozen = None                          # new weights, even while in eval mode
        return super().load_state_dict(*args, **kwargs)

    def item_weights(self) -> torch.Tensor:
        """(n_items, D) item vectors, used both as inputs and as output embeddings; computed once
        per switch to eval mode while not training (scoring a history needs it twice)."""
        if not self.training and self._frozen is not None:
            return self._frozen
        table = self.moe(self.text)
        if self.with_ids:
            table = table + self.item_emb.weight[: self.n_items]
        if not self.training:
            self._frozen = table.detach()
        return table

    def embed_items(self, ids: torch.Tensor) -> torch.Tensor:
        table = self.item_weights()
        table = torch.cat([table, table.new_zeros(1, table.shape[1])])            # padding row = 0
        return table[ids] * math.sqrt(table.shape[1])


class UniSRec(SASRec):
    """SASRec over text item vectors; needs the catalogue's text embeddings (one row per item)."""

    name = "unisrec"
    config_cls = UniSRecConfig

    def __init__(self, config: UniSRecConfig | None = None, text_embeds: np.ndarray | None = None):
        super().__init__(config or UniSRecConfig())
        self.text_embeds = None if text_embeds is None else np.asarray(text_embeds, dtype=np.float32)

    def _new_net(self, n_items: int) -> UniSRecNet:
        if self.text_embeds is None:
            raise ValueError("UniSRec needs the items' text embeddings: UniSRec(config, text_embeds)")
        if len(self.text_embeds) != n_items:
            raise ValueError(f"UniSRec: {len(self.text_embeds)} text embeddings for {n_items} items; "
                             "pass one row per catalogue item, in item-id order")
        return UniSRecNet(n_items, self.config, torch.from_numpy(self.text_embeds))

    def _restore(self, ckpt: dict) -> None:
        self.text_embeds = ckpt["state_dict"]["text"].numpy()
