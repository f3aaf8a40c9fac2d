"""The Item-Language Model: Q-Former + adapter in front of a frozen LLM (ILM, arXiv 2406.02844).

Owns the composition: item / user CF embeddings -> Q-Former queries -> adapter -> spliced into
the LLM's input embeddings at ``<item>`` / ``<user>`` placeholders, and saving and loading what
trains. The Q-Former and the adapter train, and LoRA adapters on the LLM when ``cfg.lora`` is set;
the LLM's own weights stay frozen and the LLM stays in eval mode even under ``.train()``. On CPU
the 4-bit LLM's packed inference kernel is switched off, because it silently drops gradients
(``ilm.lm.use_cpu_packed_4bit``); generation through this class is therefore slower than
through the bare LLM.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ilm.checkpoint import check_same, prefixed, read_config, read_tensors, save_part, unprefixed, untracked_trainables
from ilm.config import ILMConfig, LoRAConfig
from ilm.lm import llm_fingerprint, load_llm, use_cpu_packed_4bit, weights_signature
from ilm.qformer import ItemQFormer
from ilm.splice import Adapter, add_item_tokens, splice_embeds

PART = "ilm"  # the checkpoint part (``ilm.checkpoint``) this class writes


def with_lora(lm, cfg: LoRAConfig):
    """``lm`` wrapped in peft LoRA adapters (trainable; the LLM's own weights stay frozen).

    Raises:
        ValueError: ``lm`` already carries LoRA adapters (peft injects them into the model it
            wraps, so two ILMs with LoRA cannot share one loaded LLM).
    """
    from peft import LoraConfig, get_peft_model

    if any("lora_" in name for name, _ in lm.named_modules()):
        raise ValueError("this LLM already carries LoRA adapters (another ILM's?): give each ILM "
                         "with LoRA a freshly loaded LLM")
    return get_peft_model(lm, LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                                         target_modules=list(cfg.target_modules)))


class ItemLanguageModel(nn.Module):
    def __init__(self, cfg: ILMConfig, lm, tokenizer, qformer: ItemQFormer | None = None,
                 adapter: Adapter | None = None):
        """Adds the placeholder tokens to ``tokenizer`` (and ``lm`` if it needs more rows), and
        LoRA adapters to ``lm`` when ``cfg.lora`` is set.

        Args:
            lm: a frozen causal LM (``ilm.lm.load_llm``).
            qformer, adapter: trained modules to reuse; default: fresh ones.
        """
        super().__init__()
        self.cfg = cfg
        n_rows = len(tokenizer)
        self.token_ids = add_item_tokens(tokenizer, lm, (cfg.item_token, cfg.user_token))
        self.tokenizer = tokenizer
        if any(hasattr(m, "support_avx512bf16_for_cpu") for m in lm.modules()):
            use_cpu_packed_4bit(lm, enabled=False)  # gradients must reach the adapter
        self.qformer = qformer or ItemQFormer(cfg.qformer)
        self.adapter = adapter or Adapter.for_lm(cfg.qformer.hidden, lm, cfg.adapter, n_rows=n_rows)
        self.lm = lm if cfg.lora is None else with_lora(lm, cfg.lora)

    @property
    def item_token_id(self) -> int:
        return self.token_ids[self.cfg.item_token]

    @property
    def user_token_id(self) -> int:
        return self.token_ids[self.cfg.user_token]

    def train(self, mode: bool = True) -> ItemLanguageModel:
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

    def trained_state(self) -> dict[str, torch.Tensor]:
        """What trains, by name: ``qformer.*``, ``adapter.*`` and, with LoRA, ``lora.*`` (peft's
        adapter state dict)."""
        state = prefixed("qformer", self.qformer.state_dict()) | prefixed("adapter", self.adapter.state_dict())
        if self.cfg.lora is not None:
            from peft import get_peft_model_state_dict

            state |= prefixed("lora", get_peft_model_state_dict(self.lm, save_embedding_layers=False))
        return state

    def load_trained_state(self, tensors: dict[str, torch.Tensor]) -> None:
        """Load ``trained_state()`` tensors in place; every expected tensor must be there."""
        unknown = {k.split(".")[0] for k in tensors} - {"qformer", "adapter", "lora"}
        if unknown:
            raise KeyError(f"unexpected tensors in an ILM checkpoint: {sorted(unknown)}")
        self.qformer.load_state_dict(unprefixed("qformer", tensors))
        self.adapter.load_state_dict(unprefixed("adapter", tensors))
        lora = unprefixed("lora", tensors)
        if self.cfg.lora is None:
            if lora:
                raise KeyError("the checkpoint holds LoRA weights but its config has no lora")
            return
        from peft import get_peft_model_state_dict, set_peft_model_state_dict

        wanted = set(get_peft_model_state_dict(self.lm, save_embedding_layers=False))
        if set(lora) != wanted:
            raise KeyError(f"LoRA weights do not match the LoRA config: missing "
                           f"{sorted(wanted - set(lora))[:3]}, unexpected {sorted(set(lora) - wanted)[:3]}")
        set_peft_model_state_dict(self.lm, lora)

    def save_pretrained(self, path: str | Path, base_llm: dict | None = None,
                        extra: dict | None = None) -> Path:
        """Write what trains (``trained_state``) and a JSON config naming the base LLM.

        Args:
            path: the checkpoint directory.
            base_llm: ``ilm.lm.llm_fingerprint(cfg.llm)`` if already computed (for a local model
                directory it reads all the weights); default: computed here.
            extra: anything else worth recording (steps, metrics).
        Raises:
            ValueError: a trainable parameter would not be saved.
        """
        state = self.trained_state()
        lost = untracked_trainables(self, state)
        if lost:
            raise ValueError(f"trainable parameters the checkpoint would not hold: {lost[:5]}")
        meta = {"base_llm": base_llm or llm_fingerprint(self.cfg.llm),
                "weights": weights_signature(self.lm), "config": self.cfg.to_dict(),
                "extra": extra or {}}
        return save_part(path, PART, state, meta)

    @classmethod
    def from_pretrained(cls, path: str | Path, lm=None, tokenizer=None) -> ItemLanguageModel:
        """Rebuild a saved ILM (in eval mode) on its base LLM.

        Args:
            lm, tokenizer: the base LLM, already loaded (with LoRA, the adapters go into ``lm``
                itself); default: loaded with ``ilm.lm.load_llm`` from the recorded name and
                quantization, after checking the fingerprint of its files.
        Raises:
            BaseLLMMismatch: the base LLM's files (when loaded here) or its weights (checked on
                the first input-embedding rows, ``ilm.lm.weights_signature``) are not the
                recorded ones.
        """
        if (lm is None) != (tokenizer is None):
            raise ValueError("give both lm and tokenizer, or neither")
        meta = read_config(path, PART)
        cfg = ILMConfig.from_dict(meta["config"])
        if lm is None:
            name = meta["base_llm"]["name"]  # a local directory's resolved path
            check_same(meta["base_llm"], llm_fingerprint(name), "file fingerprint", path)
            lm, tokenizer = load_llm(name, quantize=cfg.quantize)
        check_same(meta["weights"], weights_signature(lm), "weights signature", path)
        model = cls(cfg, lm, tokenizer)
        model.load_trained_state(read_tensors(path, PART))
        return model.eval()
