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
from dataclasses import asdict, dataclass, fields, replace

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
    ce_chunk: int = 1024         # rows of (rows, n_items) logits made at once by full_softmax_ce
    seed: int = 0
    device: str = "cpu"          # "cpu", "cuda", or "auto" (cuda when available)
    progress: bool = True        # tqdm bar over epochs


CHECKPOINT_KEYS = ("state_dict", "config", "n_items")


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
        x = self.embed_items(ids) + self.pos_emb(pos)
        x = self.drop(x * valid[..., None])
        causal = steps[None, :] <= steps[:, None]                            # (T, T) key <= query
        attn_mask = causal[None] & (valid[:, None, :] | torch.eye(T, dtype=torch.bool, device=ids.device))
        attn_mask = attn_mask[:, None]                                       # (B, 1, T, T)
        for block in self.blocks:
            x = block(x, attn_mask)
        return self.ln_out(x)

    def embed_items(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T, D) input item embeddings of ``ids`` (scaled by sqrt(D) as in the paper)."""
        return self.item_emb(ids) * math.sqrt(self.item_emb.embedding_dim)

    def item_weights(self) -> torch.Tensor:
        """(n_items, D) output item embeddings (tied with the input ones, padding row excluded)."""
        return self.item_emb.weight[: self.n_items]


class SASRec:
    """Sequential recommender: next-item scores from the last hidden state of a causal transformer."""

    name = "sasrec"
    config_cls = SASRecConfig
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

        Deterministic for a given ``config.seed``: training draws from torch's RNG forked and seeded
        here (the caller's RNG state is left as it was), and ``on_epoch_end`` runs on a fork of its
        own, so a callback that draws random numbers does not change the model.

        Args:
            train_seqs: per user, train item ids in time order.
            n_items: catalogue size.
            on_epoch_end: optional ``callback(epoch, model)`` (e.g. a validation check); the model
                is in eval mode during the call.
        Returns:
            {"train_s": float, "loss_curve": [mean token CE per epoch]}.
        """
        start = time.perf_counter()
        rows = self._windows(train_seqs)
        if not rows:
            raise ValueError("SASRec.fit: no user has 2 or more train items")
        with torch.random.fork_rng(devices=self._rng_devices()):
            torch.manual_seed(self.config.seed)
            curve = self._train(rows, n_items, on_epoch_end)
        return {"train_s": time.perf_counter() - start, "loss_curve": curve}

    def _rng_devices(self) -> list[int]:
        dev = self.device
        if dev.type != "cuda":
            return []
        return [dev.index if dev.index is not None else torch.cuda.current_device()]

    def _train(self, rows: list[np.ndarray], n_items: int, on_epoch_end) -> list[float]:
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        self.n_items = n_items
        self.net = self._new_net(n_items).to(self.device)
        opt = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        lengths = np.array([len(r) for r in rows])
        curve = []
        bar = tqdm(range(cfg.epochs), desc=self.name, disable=not cfg.progress)
        for epoch in bar:
            self.net.train()
            total, n_tokens = 0.0, 0
            for batch_rows in _length_batches(lengths, cfg.batch_size, rng):
                batch = [rows[r] for r in batch_rows]
                ids = self._pad(batch, max(len(r) for r in batch))              # (B, T+1)
                inputs, targets = ids[:, :-1], ids[:, 1:]
                hidden = self.net(inputs)                                       # (B, T, D)
                keep = targets != n_items
                loss = full_softmax_ce(hidden[keep], self.net.item_weights(), targets[keep], cfg.ce_chunk)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * int(keep.sum())
                n_tokens += int(keep.sum())
            curve.append(total / n_tokens)
            bar.set_postfix(loss=f"{curve[-1]:.4f}")
            if on_epoch_end is not None:
                self.net.eval()
                with torch.random.fork_rng(devices=self._rng_devices()):
                    on_epoch_end(epoch, self)
        self.net.eval()
        return curve

    def _new_net(self, n_items: int) -> SASRecNet:
        """The untrained network for ``n_items`` items (subclasses change how items are embedded)."""
        return SASRecNet(n_items, self.config)

    def _restore(self, ckpt: dict) -> None:
        """What a subclass needs from a checkpoint before its network is built (nothing here)."""

    def save(self, path) -> None:
        """Write weights, config and ``n_items`` to one file that ``SASRec.load`` reads back."""
        self._check_fitted()
        state = {k: v.detach().cpu() for k, v in self.net.state_dict().items()}
        torch.save({"state_dict": state, "config": asdict(self.config), "n_items": self.n_items}, path)

    @classmethod
    def load(cls, path, device: str = "cpu") -> SASRec:
        """A fitted model from a ``save`` file (read with ``torch.load(weights_only=True)``).

        Config fields missing from the file take today's defaults; a file without state_dict,
        config or n_items, with config fields this code does not know, or whose weights do not
        fit the config raises ``ValueError`` naming the file.
        """
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        missing = [k for k in CHECKPOINT_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
        if missing:
            raise ValueError(f"{path} is not a SASRec checkpoint: missing {', '.join(missing)} "
                             f"(SASRec.save writes {', '.join(CHECKPOINT_KEYS)})")
        unknown = set(ckpt["config"]) - {f.name for f in fields(cls.config_cls)}
        if unknown:
            raise ValueError(f"{path}: unknown {cls.__name__} config fields {sorted(unknown)}")
        model = cls(replace(cls.config_cls(**ckpt["config"]), device=device))
        model.n_items = int(ckpt["n_items"])
        model._restore(ckpt)
        model.net = model._new_net(model.n_items)
        try:
            model.net.load_state_dict(ckpt["state_dict"])
        except RuntimeError as e:
            raise ValueError(f"{path}: weights do not fit the saved config: {e}") from None
        model.net.to(model.device).eval()
        return model

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


def full_softmax_ce(hidden: torch.Tensor, item_weights: torch.Tensor, targets: torch.Tensor,
                    chunk: int = 1024) -> torch.Tensor:
    """Mean cross-entropy of ``hidden @ item_weights.T`` against ``targets``, without ever holding
    the (N, n_items) logits of the whole batch.

    Same value and gradients as ``F.cross_entropy(hidden @ item_weights.T, targets)`` (up to float
    rounding), but the logits are made ``chunk`` rows at a time, turned into softmax gradients in
    place and contracted at once, so the gradients are ready when the forward pass ends. On CPU this
    is about twice as fast as the plain version, which spends most of its time allocating,
    zero-filling and re-reading the ~1 GB logit and gradient tensors of a batch.

    Args:
        hidden: (N, D) hidden states of the scored steps.
        item_weights: (V, D) output item embeddings.
        targets: (N,) int64 item ids in 0..V-1.
        chunk: rows of logits made at once ((chunk, V) floats of scratch memory).
    Returns:
        scalar mean CE over the N steps.
    """
    return _FullSoftmaxCE.apply(hidden, item_weights, targets, chunk)


class _FullSoftmaxCE(torch.autograd.Function):
    """Forward computes the loss and both gradients chunk by chunk; backward only scales them."""

    @staticmethod
    def forward(ctx, hidden, item_weights, targets, chunk):
        n = hidden.shape[0]
        total = hidden.new_zeros((), dtype=torch.float64)
        grad_hidden = torch.empty_like(hidden)                           # (N, D)
        grad_weights = torch.zeros_like(item_weights)                    # (V, D)
        for s in range(0, n, chunk):
            h, t = hidden[s:s + chunk], targets[s:s + chunk]             # (n_c, D), (n_c,)
            rows = torch.arange(len(t), device=t.device)
            logits = h @ item_weights.T                                  # (n_c, V)
            target_logit = logits[rows, t]
            top = logits.amax(1, keepdim=True)
            probs = logits.sub_(top).exp_()
            norm = probs.sum(1, keepdim=True)
            total += (top.squeeze(1) + norm.log().squeeze(1) - target_logit).sum(dtype=torch.float64)
            probs.div_(norm)
            probs[rows, t] -= 1.0                                        # d CE / d logits (sum, not mean)
            torch.mm(probs, item_weights, out=grad_hidden[s:s + chunk])
            grad_weights.addmm_(probs.T, h)
        ctx.save_for_backward(grad_hidden, grad_weights)
        ctx.n = n
        return (total / n).to(hidden.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        grad_hidden, grad_weights = ctx.saved_tensors
        scale = grad_out / ctx.n
        return grad_hidden * scale, grad_weights * scale, None, None
