"""The Q-Former's training losses as pure functions: tensors in, scalar out.

Terms as in ilm/config.py (itc, itm, itg, item_item, user_item); BLIP-2 (arXiv 2301.12597) for the
first three, ILM (arXiv 2406.02844) for the two CF contrastive losses. Every loss runs on CPU in
one process; gathering negatives across devices is the caller's job. Contrastive losses
L2-normalise their inputs themselves (idempotent), so cosine similarity / temperature are logits.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def itc_similarity(item_feats: torch.Tensor, text_feats: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of items to texts, the best-matching query standing for the item.

    Args:
        item_feats: (B_i, Q, D) query features of each item.
        text_feats: (B_t, D) text features.
    Returns:
        (B_i, B_t) similarity (max over queries, as in BLIP-2).
    """
    item = F.normalize(item_feats, dim=-1)
    text = F.normalize(text_feats, dim=-1)
    return torch.einsum("iqd,td->itq", item, text).amax(dim=-1)


def itc_loss(item_feats: torch.Tensor, text_feats: torch.Tensor, temperature: float | torch.Tensor,
             positive_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Item-text contrastive loss: symmetric InfoNCE over in-batch pairs, i-th item <-> i-th text.

    Args:
        item_feats: (B, Q, D); text_feats: (B, D); temperature: scalar.
        positive_mask: optional (B, B) bool, True where item i and text j belong to the same item
            (repeats in the batch); must include the diagonal. Default: the diagonal only.
    """
    logits = itc_similarity(item_feats, text_feats) / temperature  # (B, B)
    reverse = None if positive_mask is None else positive_mask.t()
    return (_info_nce(logits, positive_mask) + _info_nce(logits.t(), reverse)) / 2


def itm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Item-text matching: cross-entropy of (N, 2) logits against labels (N,), 1 = matched."""
    return F.cross_entropy(logits, labels)


def itg_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Item-grounded text generation: next-token cross-entropy.

    Args:
        logits: (B, T, V), position t predicting token t + 1.
        labels: (B, T) token ids, -100 where no loss is taken (padding).
    """
    shifted = logits[:, :-1].reshape(-1, logits.shape[-1])
    return F.cross_entropy(shifted, labels[:, 1:].reshape(-1), ignore_index=-100)


def itg_loss_at(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """ITG cross-entropy of logits gathered at the predicting positions: (N, V) against (N,)."""
    return F.cross_entropy(logits, targets)


def _info_nce(logits: torch.Tensor, positive_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over rows of -log(sum of exp over positives / sum of exp over all); diagonal by default."""
    if positive_mask is None:
        targets = torch.arange(logits.shape[0], device=logits.device)
        return F.cross_entropy(logits, targets)
    positives = logits.masked_fill(~positive_mask, float("-inf"))
    return (torch.logsumexp(logits, dim=-1) - torch.logsumexp(positives, dim=-1)).mean()


def item_item_contrastive(a: torch.Tensor, b: torch.Tensor, temperature: float | torch.Tensor,
                          positive_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE between items co-consumed by the same users (a[i] <-> b[i]).

    Args:
        a, b: (B, D) item embeddings.
        positive_mask: optional (B, B) bool, True where a[i] and b[j] are positives (for items that
            repeat in the batch); must include the diagonal. Default: the diagonal only.
    """
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).t() / temperature  # (B, B)
    reverse = None if positive_mask is None else positive_mask.t()
    return (_info_nce(logits, positive_mask) + _info_nce(logits.t(), reverse)) / 2


def user_item_contrastive(user: torch.Tensor, item: torch.Tensor, temperature: float | torch.Tensor,
                          positive_mask: torch.Tensor | None = None) -> torch.Tensor:
    """InfoNCE from each user to the item it consumed, the other in-batch items as negatives.

    One direction only (user -> item), as in two-tower retrieval: several users may share an item.

    Args:
        user: (B, D) user embeddings; item: (B, D) embeddings of the item each user consumed.
        positive_mask: optional (B, B) bool, True where user i consumed item j (diagonal included).
    """
    logits = F.normalize(user, dim=-1) @ F.normalize(item, dim=-1).t() / temperature  # (B, B)
    return _info_nce(logits, positive_mask)
