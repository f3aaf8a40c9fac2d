"""UEM user encoder (arXiv 2401.04858): a user's history as soft prompts for the frozen LLM.

Each watched item is its text embedding (MiniLM, 384-d); a small transformer reads the history
together with ``n_query`` learned query slots, and the slots' outputs, projected to the LLM's
embedding size, replace the ``<user>`` placeholders. The alternative to the Q-Former's user tokens
(CF side) and to writing the history out as text.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import nn


@dataclass
class UEMConfig:
    d_text: int = 384       # size of the item text embeddings
    hidden: int = 256
    n_layers: int = 2
    n_heads: int = 4
    max_len: int = 50       # history items read (the most recent ones)
    dropout: float = 0.1

    @classmethod
    def smoke(cls, **overrides) -> UEMConfig:
        return cls(**{**dict(d_text=8, hidden=16, n_layers=1, n_heads=2, max_len=6, dropout=0.0),
                      **overrides})

    @classmethod
    def from_dict(cls, d: dict) -> UEMConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


class UEMEncoder(nn.Module):
    """(B, L, d_text) history text embeddings -> (B, n_query, d_lm) soft prompts."""

    def __init__(self, cfg: UEMConfig, n_query: int, d_lm: int, target_rms: float = 1.0):
        super().__init__()
        self.cfg, self.n_query = cfg, n_query
        self.inp = nn.Linear(cfg.d_text, cfg.hidden)
        self.pos = nn.Embedding(cfg.max_len, cfg.hidden)
        self.queries = nn.Parameter(torch.randn(1, n_query, cfg.hidden) * 0.02)
        layer = nn.TransformerEncoderLayer(cfg.hidden, cfg.n_heads, 4 * cfg.hidden, cfg.dropout,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.hidden)
        self.out = nn.Linear(cfg.hidden, d_lm)
        nn.init.normal_(self.out.weight, std=target_rms / cfg.hidden ** 0.5)  # the LLM's scale
        nn.init.zeros_(self.out.bias)

    def forward(self, text_embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """text_embeds (B, L, d_text) right-aligned histories, mask (B, L) True on real items."""
        B, L, _ = text_embeds.shape
        if L > self.cfg.max_len:
            text_embeds, mask, L = text_embeds[:, -self.cfg.max_len:], mask[:, -self.cfg.max_len:], self.cfg.max_len
        x = self.inp(text_embeds) + self.pos(torch.arange(L, device=text_embeds.device))
        x = torch.cat([self.queries.expand(B, -1, -1), x], dim=1)
        keep = torch.cat([torch.ones(B, self.n_query, dtype=torch.bool, device=mask.device),
                          mask.bool()], dim=1)
        h = self.encoder(x, src_key_padding_mask=~keep)
        return self.out(self.norm(h[:, :self.n_query]))
