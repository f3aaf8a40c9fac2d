"""The Item-Language Model: Q-Former + adapter in front of a frozen LLM (ILM, arXiv 2406.02844).

Owns the composition only: item / user CF embeddings -> Q-Former queries -> adapter -> spliced
into the LLM's input embeddings at ``<item>`` / ``<user>`` placeholders. Only the Q-Former and the
adapter train; the LLM stays frozen and in eval mode even under ``.train()``. On CPU the 4-bit
LLM's packed inference kernel is switched off, because it silently drops gradients
(``ilm.lm.use_cpu_packed_4bit``); generation through this class is therefore slower than
through the bare LLM.
"""
from __future__ import annotations

import torch
from torch import nn

from ilm.config import ILMConfig
from ilm.lm import use_cpu_packed_4bit
from ilm.qformer import ItemQFormer
from ilm.splice import Adapter, add_item_tokens, splice_embeds


class ItemLanguageModel(nn.Module):
    def __init__(self, cfg: ILMConfig, lm, tokenizer, qformer: ItemQFormer | None = None,
                 adapter: Adapter | None = None):
        """Adds the placeholder tokens to ``tokenizer`` (and ``lm`` if it needs more rows).

        Args:
            lm: a frozen causal LM (``ilm.lm.load_llm`` or ``tiny_lm``).
            qformer, adapter: trained modules to reuse; default: fresh ones.
        """
        super().__init__()
        self.cfg = cfg
        n_rows = len(tokenizer)
        self.token_ids = add_item_tokens(tokenizer, lm, (cfg.item_token, cfg.user_token))
        self.tokenizer = tokenizer
        self.lm = lm
        if any(hasattr(m, "support_avx512bf16_for_cpu") for m in lm.modules()):
            use_cpu_packed_4bit(lm, enabled=False)  # gradients must reach the adapter
        self.qformer = qformer or ItemQFormer(cfg.qformer)
        self.adapter = adapter or Adapter.for_lm(cfg.qformer.hidden, lm, cfg.adapter, n_rows=n_rows)

    @property
    def item_token_id(self) -> int:
        return self.token_ids[self.cfg.item_token]

    @property
    def user_token_id(self) -> int:
        return self.token_ids[self.cfg.user_token]

    def train(self, mode: bool = True) -> "ItemLanguageModel":
        super().train(mode)
        self.lm.eval()
        return self

    def parameter_counts(self) -> tuple[int, int]:
        """(trainable, total) parameters, for logging."""
        params = list(self.parameters())
        return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)

    def item_vectors(self, cf_feats: torch.Tensor, cf_mask: torch.Tensor | None = None
                     ) -> torch.Tensor:
        """(n, d_cf) or (n, L, d_cf) -> (n, Q, d_lm) vectors for the LLM."""
        return self.adapter(self.qformer.encode_items(cf_feats, cf_mask))

    def embed(self, input_ids: torch.Tensor, item_cf_feats: torch.Tensor | None = None,
              user_cf_feats: torch.Tensor | None = None, user_cf_mask: torch.Tensor | None = None,
              user_vectors: torch.Tensor | None = None) -> torch.Tensor:
        """The LLM's input embeddings with item / user vectors spliced in.

        Args:
            input_ids: (B, T) prompts made with ``build_prompt(..., n_query)``.
            item_cf_feats: (n_items, d_cf), one per ``<item>`` mention in reading order.
            user_cf_feats: (n_users, L, d_cf) histories with user_cf_mask (n_users, L), or
                (n_users, d_cf) user vectors, one per ``<user>`` mention.
            user_vectors: (n_users, Q, d_lm) ready-made user vectors (e.g. UEM soft prompts)
                instead of user_cf_feats.
        Returns:
            (B, T, d_lm)
        """
        embeds = self.lm.get_input_embeddings()(input_ids)
        items = None if item_cf_feats is None else self.item_vectors(item_cf_feats)
        users = user_vectors
        if users is None and user_cf_feats is not None:
            users = self.item_vectors(user_cf_feats, user_cf_mask)
        for token_id, vectors in ((self.item_token_id, items), (self.user_token_id, users)):
            if vectors is not None:
                embeds = splice_embeds(input_ids, embeds, vectors, token_id)
            elif bool((input_ids == token_id).any()):
                raise ValueError(f"the prompt has placeholder id {token_id} but no CF features for it")
        return embeds

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, **cf):
        """The LLM's output (``.loss`` when labels are given) on the spliced embeddings."""
        return self.lm(inputs_embeds=self.embed(input_ids, **cf), attention_mask=attention_mask,
                       labels=labels)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 max_new_tokens: int = 64, **kwargs) -> torch.Tensor:
        """New token ids (B, n_new); placeholders are never generated.

        kwargs: the CF features of ``embed`` and any ``lm.generate`` argument.
        """
        cf = {k: kwargs.pop(k) for k in ("item_cf_feats", "user_cf_feats", "user_cf_mask",
                                         "user_vectors")
              if k in kwargs}
        kwargs.setdefault("suppress_tokens", list(self.token_ids.values()))
        kwargs.setdefault("pad_token_id", self.tokenizer.pad_token_id)
        return self.lm.generate(inputs_embeds=self.embed(input_ids, **cf),
                                attention_mask=attention_mask, max_new_tokens=max_new_tokens,
                                **kwargs)
