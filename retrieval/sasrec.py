"""SASRec: self-attentive sequential recommendation (Kang & McAuley 2018, "Self-Attentive Sequential
Recommendation"), trained with cross-entropy over the full catalogue.

Owns the model, its config and its training loop. A user's item sequence goes through item
embeddings plus learned positional embeddings and a stack of pre-LayerNorm causal self-attention
blocks; the hidden state at step t is scored against every item embedding (tied input/output
embeddings) and trained to predict item t+1 with a softmax over all ``n_items`` items, at every
position of the sequence (not sampled BCE as in the paper: full-softmax CE is markedly better, see
Klenitskiy & Vasilev 2023, "Turning Dross Into Gold Loss: is BERT4Rec really better than SASRec?").

Layout of a batch: rows of similar length are batched together, left-padded to the longest in
the batch (at most ``max_len`` steps). The padding id is ``n_items`` (an extra embedding row
that stays zero and is never scored); real items keep their ids 0..n_items-1. Positions count from the first real step of the
window (0, 1, ...), so a prediction at step t during training sees exactly what inference over a
t+1-item history sees. Attention is causal and never looks at padding (a padding step only sees
itself, which keeps the softmax finite). A user with more than ``max_len`` + 1 train items is cut
into consecutive windows from the end, so every train transition is learned once per epoch.

User representation: the final hidden state (after the last LayerNorm) at the last real step of a
history, i.e. what the model would score the next item with; ``score = user @ item_embeds.T``.

Interface (shared with ``pop.py`` and ``bpr.py``): ``fit``, ``score``, ``item_embeddings``,
``user_embeddings``.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm


@dataclass
class SASRecConfig:
    max_len: int = 200
    dim: int = 64
    n_layers: int = 2
    n_heads: int = 1
    dropout: float = 0.2
    lr: float = 1e-3
    weight_decay: float = 0.0
    epochs: int = 30             # validation NDCG@10 on ml-100k peaks near 30 (reports/tuning_cf.md)
    batch_size: int = 128
    seed: int = 0
    device: str = "cpu"          # "cpu", "cuda", or "auto" (cuda when available)
    progress: bool = True        # tqdm bar over epochs


class _Block(nn.Module):
    """Pre-LayerNorm transformer block: causal multi-head self-attention, then a point-wise FFN."""

    def __init__(self, dim: int, n_heads: int, dropout: float):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"dim {dim} is not divisible by n_heads {n_heads}")
        self.n_heads, self.dropout = n_heads, dropout
        self.ln_attn, self.ln_ff = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.ff = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(self.ln_attn(x)).split(D, dim=-1)
        q, k, v = (t.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2) for t in (q, k, v))  # (B, H, T, Dh)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(B, T, D)))
        return x + self.drop(self.ff(self.ln_ff(x)))


class SASRecNet(nn.Module):
    """The network: ids (B, T) with padding id ``n_items`` -> hidden states (B, T, D)."""

    def __init__(self, n_items: int, cfg: SASRecConfig):
        super().__init__()
        self.n_items = n_items
        self.item_emb = nn.Embedding(n_items + 1, cfg.dim, padding_idx=n_items)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(_Block(cfg.dim, cfg.n_heads, cfg.dropout) for _ in range(cfg.n_layers))
        self.ln_out = nn.LayerNorm(cfg.dim)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)
        with torch.no_grad():
            self.item_emb.weight[n_items].zero_()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        B, T = ids.shape
        valid = ids != self.n_items                                          # (B, T)
        first = T - valid.sum(1, keepdim=True)                               # (B, 1) first real step
        steps = torch.arange(T, device=ids.device)
        pos = (steps[None, :] - first).clamp(min=0)                          # (B, T)
        x = self.item_emb(ids) * math.sqrt(self.item_emb.embedding_dim) + self.pos_emb(pos)
        x = self.drop(x * valid[..., None])
        causal = steps[None, :] <= steps[:, None]                            # (T, T) key <= query
        attn_mask = causal[None] & (valid[:, None, :] | torch.eye(T, dtype=torch.bool, device=ids.device))
        attn_mask = attn_mask[:, None]                                       # (B, 1, T, T)
        for block in self.blocks:
            x = block(x, attn_mask)
        return self.ln_out(x)

    def item_weights(self) -> torch.Tensor:
        """(n_items, D) output item embeddings (tied with the input ones, padding row excluded)."""
        return self.item_emb.weight[: self.n_items]


class SASRec:
    """Sequential recommender: next-item scores from the last hidden state of a causal transformer."""

    name = "sasrec"
    user_repr = ("final hidden state at the last step of the history passed to user_embeddings "
                 "(train + valid items when exported for the test phase)")

    def __init__(self, config: SASRecConfig | None = None):
        self.config = config or SASRecConfig()
        self.net: SASRecNet | None = None
        self.n_items = 0

    @property
    def device(self) -> torch.device:
        dev = self.config.device
        if dev == "auto":
            dev = "cuda" if torch.cuda.is_available() else "cpu"
        return torch.device(dev)

    def _windows(self, train_seqs: list[np.ndarray]) -> list[np.ndarray]:
        """Training rows: each sequence cut from its end into windows of max_len + 1 items that
        overlap by one, so each transition appears once; rows with fewer than 2 items are dropped."""
        span = self.config.max_len
        rows = []
        for seq in train_seqs:
            seq = np.asarray(seq, dtype=np.int64)
            end = len(seq)
            while end >= 2:
                rows.append(seq[max(0, end - span - 1):end])
                end -= span
        return rows

    def _pad(self, seqs: list[np.ndarray], length: int) -> torch.Tensor:
        """(B, length) int64, left-padded with ``n_items``, keeping the last ``length`` items."""
        out = np.full((len(seqs), length), self.n_items, dtype=np.int64)
        for b, s in enumerate(seqs):
            s = np.asarray(s, dtype=np.int64)[-length:] if length else s[:0]
            if len(s):
                out[b, length - len(s):] = s
        return torch.from_numpy(out).to(self.device)

    def fit(self, train_seqs: list[np.ndarray], n_items: int, on_epoch_end=None) -> dict:
        """Train with full-catalogue cross-entropy on every next-item step of ``train_seqs``.

        Args:
            train_seqs: per user, train item ids in time order.
            n_items: catalogue size.
            on_epoch_end: optional ``callback(epoch, model)`` (e.g. a validation check); the model
                is in eval mode during the call.
        Returns:
            {"train_s": float, "loss_curve": [mean token CE per epoch]}.
        """
        cfg = self.config
        start = time.perf_counter()
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        self.n_items = n_items
        self.net = SASRecNet(n_items, cfg).to(self.device)
        opt = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        rows = self._windows(train_seqs)
        if not rows:
            raise ValueError("SASRec.fit: no user has 2 or more train items")
        lengths = np.array([len(r) for r in rows])
        curve = []
        bar = tqdm(range(cfg.epochs), desc="sasrec", disable=not cfg.progress)
        for epoch in bar:
            self.net.train()
            total, n_tokens = 0.0, 0
            for batch_rows in _length_batches(lengths, cfg.batch_size, rng):
                batch = [rows[r] for r in batch_rows]
                ids = self._pad(batch, max(len(r) for r in batch))              # (B, T+1)
                inputs, targets = ids[:, :-1], ids[:, 1:]
                hidden = self.net(inputs)                                       # (B, T, D)
                keep = targets != n_items
                logits = hidden[keep] @ self.net.item_weights().T               # (N, n_items)
                loss = F.cross_entropy(logits, targets[keep])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * int(keep.sum())
                n_tokens += int(keep.sum())
            curve.append(total / n_tokens)
            bar.set_postfix(loss=f"{curve[-1]:.4f}")
            if on_epoch_end is not None:
                self.net.eval()
                on_epoch_end(epoch, self)
        self.net.eval()
        return {"train_s": time.perf_counter() - start, "loss_curve": curve}

    def _check_fitted(self) -> None:
        if self.net is None:
            raise RuntimeError("SASRec is not fitted; call fit(train_seqs, n_items) first")

    @torch.no_grad()
    def _last_hidden(self, histories: list[np.ndarray], batch_size: int = 256) -> torch.Tensor:
        """(B, D) final hidden state at the last step of each history (an empty history gives the
        state of a lone padding step)."""
        self._check_fitted()
        self.net.eval()
        out = []
        for s in range(0, len(histories), batch_size):
            chunk = histories[s:s + batch_size]
            length = max(1, min(self.config.max_len, max(len(h) for h in chunk)))
            out.append(self.net(self._pad(chunk, length))[:, -1])
        if not out:
            return torch.zeros(0, self.config.dim)
        return torch.cat(out)

    @torch.no_grad()
    def score(self, user_idx: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
        """(B, n_items) float32 next-item logits from each history (user_idx is not used)."""
        hidden = self._last_hidden(histories)
        return (hidden @ self.net.item_weights().T).float().cpu().numpy()

    def item_embeddings(self) -> np.ndarray:
        """(n_items, D) float32 item embeddings (input = output embeddings)."""
        self._check_fitted()
        return self.net.item_weights().detach().float().cpu().numpy()

    def user_embeddings(self, histories: list[np.ndarray]) -> np.ndarray:
        """(len(histories), D) float32 final hidden state over each history; score = user @ items.T."""
        return self._last_hidden(histories).float().cpu().numpy()

    def config_dict(self) -> dict:
        return asdict(self.config)


def _length_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Row indices in batches of similar length, in random order (less padding, ~2x faster epochs).

    Rows are sorted by their length times a random factor in [0.75, 1.33], so batch membership
    changes from epoch to epoch while lengths within a batch stay close.
    """
    key = lengths * np.exp(rng.uniform(-0.29, 0.29, size=len(lengths)))
    order = np.argsort(key, kind="stable")
    batches = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
    return [batches[b] for b in rng.permutation(len(batches))]
