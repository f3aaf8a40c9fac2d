"""The checkpoint file format of the trained parts of the Item-Language Model.

A checkpoint is a directory of named parts, each a safetensors file of tensors
(``<part>_weights.safetensors``) and a JSON file (``<part>_config.json``) with a
``format_version``. The classes decide what goes in: ``ItemLanguageModel.save_pretrained`` writes
the part ``ilm`` (Q-Former, adapter, LoRA weights; its config names the base LLM),
``ILMRecommender.save_pretrained`` adds ``rec`` (the next-item head, UEM), and stage 1 writes
``qformer`` alone. The LLM itself is never saved: loading loads it fresh and refuses one whose
recorded identity differs (``BaseLLMMismatch``).
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ilm.config import QFormerConfig
from ilm.qformer import ItemQFormer

FORMAT_VERSION = 2


class BaseLLMMismatch(ValueError):
    """The checkpoint was trained on another base LLM than the one given."""


def config_path(path: str | Path, part: str) -> Path:
    return Path(path) / f"{part}_config.json"


def weights_path(path: str | Path, part: str) -> Path:
    return Path(path) / f"{part}_weights.safetensors"


def save_part(path: str | Path, part: str, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
    """Write one part (tensors + JSON, ``format_version`` added) into directory ``path``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(weights_path(path, part)))
    config_path(path, part).write_text(json.dumps({"format_version": FORMAT_VERSION, **meta}, indent=2))
    return path


def read_config(path: str | Path, part: str) -> dict:
    """One part's JSON.

    Raises:
        FileNotFoundError: the directory holds no such part.
        ValueError: it was written in another format version.
    """
    file = config_path(path, part)
    if not file.is_file():
        held = sorted(p.name for p in Path(path).iterdir()) if Path(path).is_dir() else []
        raise FileNotFoundError(f"{path} holds no '{part}' checkpoint part ({file.name} is missing; "
                                f"it holds {held or 'nothing'})")
    meta = json.loads(file.read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{file} has format_version {meta.get('format_version')}; this code reads "
                         f"version {FORMAT_VERSION} (retrain, or check out the code that wrote it)")
    return meta


def read_tensors(path: str | Path, part: str) -> dict[str, torch.Tensor]:
    return load_file(str(weights_path(path, part)))


def check_same(recorded: dict, actual: dict, what: str, path: str | Path) -> None:
    """Raise BaseLLMMismatch naming the first key where the recorded base LLM differs."""
    for key in recorded:
        if recorded[key] != actual.get(key):
            raise BaseLLMMismatch(
                f"checkpoint {path} was trained on base LLM {recorded}, but the given one's {what} "
                f"is {actual} ({key} differs)")


def untracked_trainables(module: nn.Module, tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of ``module``'s trainable parameters whose storage none of ``tensors`` shares: what a
    checkpoint of ``tensors`` would silently lose."""
    stored = {t.data_ptr() for t in tensors.values()}
    return [n for n, p in module.named_parameters() if p.requires_grad and p.data_ptr() not in stored]


def prefixed(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in state.items()}


def unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    start = prefix + "."
    return {k[len(start):]: v for k, v in tensors.items() if k.startswith(start)}


def save_qformer(path: str | Path, qformer: ItemQFormer, extra: dict | None = None) -> Path:
    """A stage-1 checkpoint: the Q-Former alone (no LLM is involved yet) and its config."""
    return save_part(path, "qformer", qformer.state_dict(),
                     {"qformer": asdict(qformer.cfg), "extra": extra or {}})


def load_qformer(path: str | Path) -> ItemQFormer:
    qformer = ItemQFormer(QFormerConfig.from_dict(read_config(path, "qformer")["qformer"]))
    qformer.load_state_dict(read_tensors(path, "qformer"))
    return qformer.eval()
