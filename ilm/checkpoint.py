"""Saving and loading the trained part of the Item-Language Model.

Only what trains is saved: the Q-Former, the adapter and any further named modules (the
next-item head, a UEM encoder) (``ilm_weights.safetensors``), with a JSON config
(``ilm_config.json``) naming the base LLM and its checksum (``ilm.lm.llm_fingerprint``) and the
placeholder tokens. To use a checkpoint, load the base LLM fresh and apply this small file;
loading refuses a base LLM whose name or checksum differs from the recorded one.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from safetensors.torch import load_model, save_model
from torch import nn

from ilm.config import ILMConfig, QFormerConfig
from ilm.qformer import ItemQFormer
from ilm.splice import Adapter

WEIGHTS = "ilm_weights.safetensors"
CONFIG = "ilm_config.json"
FORMAT_VERSION = 1


class BaseLLMMismatch(ValueError):
    """The checkpoint was trained on another base LLM than the one given."""


def save_checkpoint(path: str | Path, cfg: ILMConfig, qformer: ItemQFormer, adapter: Adapter,
                    base_llm: dict, extra: dict | None = None,
                    modules: dict[str, nn.Module] | None = None) -> Path:
    """Write the Q-Former + adapter weights and the JSON config into directory ``path``.

    Args:
        base_llm: ``{"name", "sha256"}`` of the frozen LLM (``ilm.lm.llm_fingerprint``).
        extra: anything else worth recording (step, validation metrics).
        modules: further trained modules by name, saved in the same file.
    """
    modules = dict(modules or {})
    if {"qformer", "adapter"} & set(modules):
        raise ValueError("'qformer' and 'adapter' are reserved module names")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_model(nn.ModuleDict({"qformer": qformer, "adapter": adapter, **modules}), str(path / WEIGHTS))
    meta = {"format_version": FORMAT_VERSION, "base_llm": base_llm, "config": cfg.to_dict(),
            "modules": sorted(modules),
            "adapter": {"d_in": adapter.proj.in_features, "d_out": adapter.proj.out_features},
            "extra": extra or {}}
    (path / CONFIG).write_text(json.dumps(meta, indent=2))
    return path


def read_checkpoint_config(path: str | Path) -> dict:
    """The checkpoint's JSON: format_version, base_llm, config, adapter, extra."""
    return json.loads((Path(path) / CONFIG).read_text())


def load_checkpoint(path: str | Path, base_llm: dict | None,
                    modules: dict[str, nn.Module] | None = None) -> tuple[ILMConfig, ItemQFormer, Adapter]:
    """Rebuild the Q-Former and adapter saved by ``save_checkpoint``.

    Args:
        modules: fresh instances of the further modules the checkpoint holds, loaded in place;
            those not asked for are skipped.
        base_llm: the fingerprint of the LLM these will be used with; None skips the check (only
            for inspecting a checkpoint).
    Raises:
        BaseLLMMismatch: the recorded base LLM's name or sha256 differs from ``base_llm``.
    """
    meta = read_checkpoint_config(path)
    recorded = meta["base_llm"]
    if base_llm is not None:
        for key in ("name", "sha256"):
            if recorded.get(key) != base_llm.get(key):
                raise BaseLLMMismatch(
                    f"checkpoint {path} was trained on base LLM {recorded}, but the given one is "
                    f"{base_llm} ({key} differs)")
    cfg = ILMConfig.from_dict(meta["config"])
    qformer = ItemQFormer(cfg.qformer)
    adapter = Adapter(meta["adapter"]["d_in"], meta["adapter"]["d_out"], cfg=cfg.adapter)
    modules = dict(modules or {})
    missing = set(modules) - set(meta.get("modules", []))
    if missing:
        raise KeyError(f"checkpoint {path} has no module(s) {sorted(missing)} "
                       f"(it holds {meta.get('modules', [])})")
    load_model(nn.ModuleDict({"qformer": qformer, "adapter": adapter, **modules}),
               str(Path(path) / WEIGHTS), strict=not (set(meta.get("modules", [])) - set(modules)))
    return cfg, qformer.eval(), adapter.eval()


QFORMER_WEIGHTS = "qformer.safetensors"
QFORMER_CONFIG = "qformer_config.json"


def save_qformer(path: str | Path, qformer: ItemQFormer, extra: dict | None = None) -> Path:
    """A stage-1 checkpoint: the Q-Former alone (no LLM is involved yet) and its config."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_model(qformer, str(path / QFORMER_WEIGHTS))
    (path / QFORMER_CONFIG).write_text(json.dumps(
        {"format_version": FORMAT_VERSION, "qformer": asdict(qformer.cfg), "extra": extra or {}}, indent=2))
    return path


def load_qformer(path: str | Path) -> ItemQFormer:
    meta = json.loads((Path(path) / QFORMER_CONFIG).read_text())
    qformer = ItemQFormer(QFormerConfig.from_dict(meta["qformer"]))
    load_model(qformer, str(Path(path) / QFORMER_WEIGHTS))
    return qformer.eval()
