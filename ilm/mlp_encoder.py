"""The ILM paper's main baseline: a CoLLM-style MLP from an item's CF embedding straight to its
``n_query`` LLM vectors, in place of the Q-Former (no queries, no attention, no stage 1).

It has the interface of ``ItemQFormer`` that stage 2 and ``ILMRecommender`` use
(``encode_items``, ``item_embed``, ``temperature``, ``cfg``), so it drops into
``ItemLanguageModel(qformer=MLPItemEncoder(cfg))``. A user (a history) is the masked mean of its
items' CF embeddings.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ilm.config import QFormerConfig


class MLPItemEncoder(nn.Module):
    def __init__(self, cfg: QFormerConfig):
        super().__init__()
        self.cfg = cfg
        H = cfg.hidden
        self.net = nn.Sequential(nn.LayerNorm(cfg.d_cf), nn.Linear(cfg.d_cf, 2 * H), nn.GELU(),
                                 nn.Dropout(cfg.dropout), nn.Linear(2 * H, cfg.n_query * H))
        self.out_norm = nn.LayerNorm(H)
        self.item_proj = nn.Linear(H, cfg.d_embed)
        self.temp = nn.Parameter(torch.tensor(float(cfg.temperature)))

    @property
    def temperature(self) -> torch.Tensor:
        return self.temp.clamp(1e-3, 0.5)

    def encode_items(self, cf_feats: torch.Tensor, cf_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, d_cf) items or (B, L, d_cf) histories with a (B, L) mask -> (B, Q, hidden)."""
        if cf_feats.dim() == 3:
            mask = (torch.ones(cf_feats.shape[:2], device=cf_feats.device) if cf_mask is None
                    else cf_mask.float())
            if not bool((mask.sum(1) > 0).all()):
                raise ValueError("every history needs at least one CF embedding")
            cf_feats = (cf_feats * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        B = cf_feats.shape[0]
        return self.out_norm(self.net(cf_feats).view(B, self.cfg.n_query, self.cfg.hidden))

    def item_embed(self, cf_feats: torch.Tensor, cf_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, d_embed) one L2-normalised vector per item or user (the next-item head's space)."""
        return F.normalize(self.item_proj(self.encode_items(cf_feats, cf_mask)).mean(dim=1), dim=-1)
