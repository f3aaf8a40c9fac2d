"""The one config system of the training and benchmark commands.

A run's config is a dataclass whose fields are other config dataclasses (sections) or plain values;
their defaults live in the dataclasses, beside the code they configure (``SASRecConfig`` in
``retrieval/sasrec.py``, ``QFormerConfig`` in ``ilm/config.py``, ...). A JSON file in
``training/configs/<kind>_<name>.json`` holds only overrides, by section:

    {"seed": 1, "sasrec": {"epochs": 2, "max_len": 20}}

Unknown keys are errors that name the key and the keys known there; JSON lists become tuples where
the default is a tuple.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, TypeVar

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
T = TypeVar("T")


def apply_overrides(cfg: T, overrides: dict[str, Any], where: str = "config") -> T:
    """A copy of the dataclass ``cfg`` with ``overrides`` applied, recursing into sections."""
    known = {f.name for f in dataclasses.fields(cfg)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
    changes = {}
    for key, value in overrides.items():
        current = getattr(cfg, key)
        if dataclasses.is_dataclass(current) and isinstance(value, dict):
            changes[key] = apply_overrides(current, value, f"{where}.{key}")
        elif isinstance(current, tuple) and isinstance(value, list):
            changes[key] = tuple(value)
        else:
            changes[key] = value
    return dataclasses.replace(cfg, **changes)


def config_path(kind: str, name_or_path: str) -> Path:
    """``training/configs/<kind>_<name>.json`` for a name, or the path itself for a .json path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"{kind}_{name_or_path}.json"
    if not path.is_file():
        known = sorted(p.stem.removeprefix(f"{kind}_") for p in CONFIG_DIR.glob(f"{kind}_*.json"))
        raise FileNotFoundError(f"no {kind} config {name_or_path!r} ({path}); known: {', '.join(known)}")
    return path


def load_config(kind: str, name_or_path: str, base: T) -> T:
    """``base`` (the defaults) with the overrides of the named JSON config applied."""
    path = config_path(kind, name_or_path)
    return apply_overrides(base, json.loads(path.read_text()), str(path))
