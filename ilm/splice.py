"""Splicing item vectors into the frozen LLM's input: placeholder tokens, prompts, adapter, labels.

The placeholder pattern (STYLE.md section 3):
  1. ``add_item_tokens`` adds ``<item>`` and ``<user>`` as special tokens (their embedding rows are
     always overwritten).
  2. ``build_prompt`` expands every mention to ``n_query`` copies, so text length = LM input length.
  3. ``Adapter`` maps Q-Former outputs into the LLM's embedding space; ``splice_embeds`` writes
     them, in placeholder order, over the LLM's own embeddings of the prompt.
  4. ``make_labels`` puts -100 on prompt, placeholder and padding positions, so the LLM's own loss
     works without slicing logits.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ilm.config import ITEM_TOKEN, USER_TOKEN, AdapterConfig


def add_item_tokens(tokenizer, model=None, tokens: Sequence[str] = (ITEM_TOKEN, USER_TOKEN)
                    ) -> dict[str, int]:
    """Add the placeholder tokens as special tokens; grow the LLM's embeddings if they no longer fit.

    Qwen's embedding matrix has spare rows, so it usually is not resized.
    Returns:
        {token: id}
    """
    tokenizer.add_special_tokens({"additional_special_tokens": list(tokens)},
                                 replace_extra_special_tokens=False)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in tokens}
    if model is not None and max(ids.values()) >= model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    return ids


def build_prompt(text: str | Sequence[str], n_query: int,
                 markers: Sequence[str] = (ITEM_TOKEN, USER_TOKEN)) -> str:
    """Expand every marker in ``text`` (or in the joined ``parts``) to ``n_query`` copies of itself.

    >>> build_prompt("Like <item>?", 2)
    'Like <item><item>?'
    """
    text = text if isinstance(text, str) else "".join(text)
    pattern = re.compile("|".join(re.escape(m) for m in markers))
    return pattern.sub(lambda m: m.group(0) * n_query, text)


def embedding_rms(embeddings: nn.Embedding | torch.Tensor, n_rows: int | None = None) -> float:
    """Mean RMS of the rows of an input-embedding matrix (first ``n_rows``, i.e. without added rows)."""
    weight = embeddings.weight if isinstance(embeddings, nn.Module) else embeddings
    rows = weight[:n_rows].detach().float()
    return float(rows.pow(2).mean(dim=-1).sqrt().mean())


class Adapter(nn.Module):
    """One ``Linear(d_qformer, d_lm)`` whose outputs have the scale of the LLM's own embeddings.

    ``target_rms`` is the mean RMS of the LLM's input-embedding rows. With
    ``match_embedding_rms`` the weights start at std ``target_rms / sqrt(d_qformer)``, so unit-RMS
    Q-Former outputs (they leave a LayerNorm) map to vectors of about that RMS; with
    ``fixed_output_rms`` every output is also RMS-normalised to exactly ``target_rms``.
    """

    def __init__(self, d_qformer: int, d_lm: int, target_rms: float = 1.0,
                 cfg: AdapterConfig | None = None):
        super().__init__()
        self.cfg = cfg or AdapterConfig()
        self.proj = nn.Linear(d_qformer, d_lm)
        self.register_buffer("target_rms", torch.tensor(float(target_rms)))
        if self.cfg.match_embedding_rms:
            nn.init.normal_(self.proj.weight, std=target_rms / d_qformer ** 0.5)
            nn.init.zeros_(self.proj.bias)

    @classmethod
    def for_lm(cls, d_qformer: int, lm, cfg: AdapterConfig | None = None,
               n_rows: int | None = None) -> Adapter:
        """An adapter sized and scaled for ``lm``'s input embeddings (``n_rows``: the rows to measure,
        default all; pass the tokenizer's size before the placeholders were added)."""
        emb = lm.get_input_embeddings()
        return cls(d_qformer, emb.embedding_dim, embedding_rms(emb, n_rows), cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., d_qformer) -> (..., d_lm)"""
        out = self.proj(x)
        if self.cfg.fixed_output_rms:
            out = F.rms_norm(out, (out.shape[-1],)) * self.target_rms
        return out


def splice_embeds(input_ids: torch.Tensor, lm_input_embeddings: nn.Module | torch.Tensor,
                  item_vectors: torch.Tensor, token_id: int) -> torch.Tensor:
    """Write item vectors over the placeholder positions of the LLM's input embeddings.

    Placeholders are filled in reading order (batch row, then position): item 0's Q vectors go to
    the first Q placeholders, and so on.

    Args:
        input_ids: (B, T) prompt ids with n_items * Q copies of ``token_id``.
        lm_input_embeddings: the LLM's input-embedding module, or (B, T, d_lm) embeddings already
            computed (to splice a second placeholder kind, e.g. ``<user>`` after ``<item>``).
        item_vectors: (n_items, Q, d_lm) adapter outputs.
        token_id: the placeholder id.
    Returns:
        (B, T, d_lm) embeddings in the embedding dtype; gradients flow into ``item_vectors``.
    Raises:
        ValueError: the number of placeholders is not n_items * Q.
    """
    if isinstance(lm_input_embeddings, torch.Tensor):
        embeds = lm_input_embeddings
    else:
        embeds = lm_input_embeddings(input_ids)
    rows, cols = torch.nonzero(input_ids == token_id, as_tuple=True)
    n_items, n_query, _ = item_vectors.shape
    if rows.numel() != n_items * n_query:
        raise ValueError(
            f"placeholder count mismatch for token id {token_id}: the prompt has {rows.numel()} "
            f"placeholders, but {n_items} item(s) x {n_query} query vectors = "
            f"{n_items * n_query} (was the prompt expanded with build_prompt(n_query={n_query})?)")
    vectors = item_vectors.reshape(-1, item_vectors.shape[-1]).to(device=embeds.device, dtype=embeds.dtype)
    return embeds.index_put((rows, cols), vectors)


def make_labels(input_ids: torch.Tensor, prompt_lens: int | Sequence[int] | torch.Tensor | None = None,
                prompt_mask: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                placeholder_ids: Sequence[int] = ()) -> torch.Tensor:
    """Labels for the LLM's own loss: input ids with -100 where no loss is taken.

    Args:
        input_ids: (B, T) prompt followed by target text (right padding).
        prompt_lens: the prompt's length, one int or one per row; or
        prompt_mask: (B, T) True on prompt positions.
        attention_mask: (B, T) 0 on padding.
        placeholder_ids: ids of ``<item>`` / ``<user>`` (masked wherever they are).
    Returns:
        (B, T) long.
    """
    labels = input_ids.clone()
    if prompt_lens is not None:
        lens = torch.as_tensor(prompt_lens, device=input_ids.device).reshape(-1, 1)
        labels[torch.arange(input_ids.shape[1], device=input_ids.device)[None] < lens] = -100
    if prompt_mask is not None:
        labels[prompt_mask.bool()] = -100
    if attention_mask is not None:
        labels[attention_mask == 0] = -100
    for token_id in placeholder_ids:
        labels[input_ids == token_id] = -100
    return labels
