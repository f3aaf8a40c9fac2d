"""Configs of an ILM training + evaluation run, loaded from ``training/configs/ilm_<name>.json``.

  smoke    the small LLM (SmolLM2-135M, fp32), a tiny Q-Former and a few steps: the whole
           pipeline in minutes on a CPU; the tests point its LLM at a tiny random model instead
  default  CPU: stage 1 and stage 2 on ml-latest-small with the default LLM (Qwen2.5-Coder-1.5B,
           NF4); stage 2 is capped by a time budget (wall times: reports/ilm_ml-latest-small.md)
  short    the default with half its stage-2 budget per run and fewer evaluation users (a
           second data set on a CPU when time is short)
  full     GPU: bigger Q-Former, more queries, many more stage-2 steps
  gpu      GPU, the small LLM: the ``cpu`` config's stage 1 and LLM (SmolLM2-135M, bf16 on a GPU),
           stage 2 with batch 64 for the time ``training.ilm_gpu`` gives each run, the ``cpu``
           evaluation (so the two runs differ in stage 2 alone); the default LLM's 1.1 GB of
           weights cannot travel to the GPU machine this project is lent (64 MiB a call)
  stage1   the stage-1 study (``python -m training.ilm_stage1``): a frozen MiniLM text side,
           trained to a flat validation curve, every ablation and CF input compared
  cpu      stage 1 as in ``stage1`` and stage 2 with the small LLM (SmolLM2-135M, fp32) within a
           2-core CPU's hour, with the item-token probes (``training/ilm_probes.py``)
  dialog   the dialog ranker's ILM (``training.ilm_dialog``): the small LLM (SmolLM2-135M, fp32),
           the conversational split, next-item prompts with requests, no ablations
A JSON file holds overrides of the dataclass defaults, by section (``training/config.py``). The
ILM's own sections (``qformer``, ``adapter``, ``lora``) are the dataclasses of ``ilm/config.py``
with their defaults; ``ILMRunConfig.ilm_config`` composes them with the stage-2 LLM into the ILM
that stage 2 trains.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace

from ilm.config import DEFAULT_LLM, DEFAULT_QUANTIZE, AdapterConfig, ILMConfig, LoRAConfig, QFormerConfig
from ilm.uem import UEMConfig
from retrieval.sasrec import SASRecConfig
from training.config import apply_overrides, config_path

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
    val_frac: float = 0.1            # items kept apart the same way to choose the epoch on
    patience: int = 0                # stop after this many epochs without a better validation
                                     # Recall@10 and keep the best epoch (0: run every epoch, keep the last)
    history_len: int = 20
    window: int = 5
    cf_input: str = "sasrec"         # the CF table the Q-Former reads (training/cf_inputs.py): sasrec,
                                     # bpr, cooc or several joined by "+"
    compare_cf_inputs: tuple = ()    # also measure these CF inputs (ridge + compare_ablation)
    compare_ablation: str = "item_text"
    ablations: tuple = ("item_text", "item_item", "user_item")  # the last one feeds stage 2


@dataclass
class Stage2Config:
    llm: str = DEFAULT_LLM           # a packaged name (``ilm.lm.SOURCES``), a local dir or a hub id
    quantize: str = DEFAULT_QUANTIZE
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
    lora: bool = False               # also train LoRA adapters on the LLM (their shape: section lora)
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
    n_probe_items: int = 0           # item-token probes (training/ilm_probes.py) on this many
                                     # held-out and as many seen items (0: none)


@dataclass
class ILMRunConfig:
    name: str = "default"
    seed: int = 0
    qformer: QFormerConfig = field(default_factory=QFormerConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    uem: UEMConfig = field(default_factory=UEMConfig)
    sasrec: SASRecConfig = field(default_factory=SASRecConfig)
    stage1: Stage1Config = field(default_factory=Stage1Config)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    def ilm_config(self, d_cf: int) -> ILMConfig:
        """The ILM stage 2 trains: its LLM, the Q-Former over CF embeddings of size ``d_cf``, the
        adapter, and LoRA when ``stage2.lora``."""
        return ILMConfig(llm=self.stage2.llm, quantize=self.stage2.quantize,
                         qformer=replace(self.qformer, d_cf=d_cf), adapter=self.adapter,
                         lora=self.lora if self.stage2.lora else None)


def load_config(name_or_path: str) -> ILMRunConfig:
    """``smoke`` / ``default`` / ``short`` / ``full`` / ``dialog`` or a path to a JSON file of
    overrides, applied by ``training.config`` (unknown keys are errors that name them)."""
    path = config_path("ilm", name_or_path)
    base = ILMRunConfig(name=path.stem.removeprefix("ilm_"))
    return apply_overrides(base, json.loads(path.read_text()), str(path))
