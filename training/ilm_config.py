"""Configs of an ILM training + evaluation run, loaded from ``training/configs/ilm_<name>.json``.

  smoke    a tiny random LLM and a tiny Q-Former: the whole pipeline in seconds (tests)
  default  CPU: stage 1 and stage 2 on ml-latest-small with the default LLM (Qwen2.5-Coder-1.5B,
           NF4) inside 45 minutes on 2 cores; stage 2 is capped by a time budget
  short    the default with a 4.5-minute stage-2 budget per run and fewer evaluation users (a
           second data set on a CPU when time is short)
  full     GPU: bigger Q-Former, more queries, many more stage-2 steps
  dialog   the dialog ranker's ILM (``training.ilm_dialog``): the small LLM (SmolLM2-135M, fp32),
           the conversational split, next-item prompts with requests, no ablations
A JSON file holds overrides of the dataclass defaults, by section.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from ilm.config import QFormerConfig
from ilm.uem import UEMConfig
from retrieval.sasrec import SASRecConfig

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
ABLATIONS = {  # the paper's stage-1 ablations: which CF losses join the item-text ones
    "item_text": dict(item_item=False, user_item=False),
    "item_item": dict(item_item=True, user_item=False),
    "user_item": dict(item_item=True, user_item=True),
}


@dataclass
class Stage1Config:
    epochs: int = 4
    max_steps: int = 0               # cap on steps per ablation (0 = none)
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 0.05
    holdout_frac: float = 0.1        # items whose texts stage 1 never sees (retrieval is measured on them)
    history_len: int = 20
    window: int = 5
    ablations: tuple = ("item_text", "item_item", "user_item")  # the last one feeds stage 2


@dataclass
class Stage2Config:
    llm: str = "qwen2.5-coder-1.5b"  # also "smollm2-135m", a local dir, a hub id, or "tiny" (tests)
    quantize: str = "nf4"
    steps: int = 400
    time_budget_s: float = 0.0       # stop early when this many seconds have passed (0 = none)
    batch_size: int = 8
    lr: float = 2e-4
    weight_decay: float = 0.01
    warmup: int = 20
    task_weights: dict = field(default_factory=lambda: {
        "next_item": 0.4, "description": 0.2, "genre_pref": 0.2, "conversation": 0.2})
    n_negatives: int = 255           # random items scored against each next-item row
    n_recent: int = 3                # last movies shown as <item> mentions
    request_prob: float = 0.0        # next_item prompts that also carry a request ("They said: ...")
    history_len: int = 50            # history items behind a <user> mention
    max_target_tokens: int = 48
    lora: bool = False               # also train LoRA adapters on the LLM (peft); off by default
    lora_r: int = 8
    log_every: int = 10


@dataclass
class EvalConfig:
    n_candidates: int = 50           # the retriever's top-k that the ILM re-ranks
    max_users: int = 0               # 0 = every user (valid and test)
    batch_size: int = 8
    alphas: tuple = (0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)  # retriever weight, chosen on valid
    n_description: int = 30          # held-out items for the description task
    desc_max_new_tokens: int = 40
    n_genre_users: int = 100         # test users for the genre-preference task
    genre_top: int = 3
    text_history: tuple = (5, 50)


@dataclass
class ILMRunConfig:
    name: str = "default"
    seed: int = 0
    qformer: QFormerConfig = field(default_factory=lambda: QFormerConfig(
        n_query=4, hidden=128, n_layers=2, intermediate=512, cross_attention_freq=1,
        text_max_len=32, d_embed=128))
    uem: UEMConfig = field(default_factory=UEMConfig)
    sasrec: SASRecConfig = field(default_factory=SASRecConfig)
    stage1: Stage1Config = field(default_factory=Stage1Config)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict:
        return asdict(self)


SECTIONS = {"qformer": QFormerConfig, "uem": UEMConfig, "sasrec": SASRecConfig,
            "stage1": Stage1Config, "stage2": Stage2Config, "eval": EvalConfig}


def load_config(name_or_path: str, **top) -> ILMRunConfig:
    """``smoke`` / ``default`` / ``full`` or a path to a JSON file of overrides."""
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"ilm_{name_or_path}.json"
    if not path.is_file():
        known = sorted(p.stem.removeprefix("ilm_") for p in CONFIG_DIR.glob("ilm_*.json"))
        raise FileNotFoundError(f"no ILM config {name_or_path!r} ({path}); known: {known}")
    overrides = json.loads(path.read_text())
    cfg = ILMRunConfig(name=overrides.pop("name", path.stem.removeprefix("ilm_")))
    for section, cls in SECTIONS.items():
        given = overrides.pop(section, {})
        unknown = set(given) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"{path}: unknown {section} keys {sorted(unknown)}")
        given = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}
        cfg = replace(cfg, **{section: replace(getattr(cfg, section), **given)})
    if overrides:
        unknown = set(overrides) - {"seed"}
        if unknown:
            raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
        cfg = replace(cfg, **overrides)
    return replace(cfg, **top) if top else cfg
