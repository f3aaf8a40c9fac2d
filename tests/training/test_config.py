"""The one config system (training/config.py): overrides by section, unknown keys refused."""
from dataclasses import dataclass, field

import pytest

from training.config import apply_overrides, config_path, load_config


@dataclass
class Inner:
    lr: float = 1e-3
    sizes: tuple = (1, 2)


@dataclass
class Outer:
    seed: int = 0
    inner: Inner = field(default_factory=Inner)


def test_overrides_reach_sections_and_keep_the_other_defaults():
    cfg = apply_overrides(Outer(), {"seed": 3, "inner": {"sizes": [4, 5]}})
    assert cfg == Outer(seed=3, inner=Inner(lr=1e-3, sizes=(4, 5)))
    assert Outer().inner.sizes == (1, 2)        # the defaults are not mutated


def test_unknown_keys_are_named_with_where_they_were_given():
    with pytest.raises(ValueError, match=r"config\.inner: unknown keys \['lrr'\]; known: \['lr', 'sizes'\]"):
        apply_overrides(Outer(), {"inner": {"lrr": 1}})


def test_named_configs_are_found_and_a_missing_one_lists_the_known(tmp_path):
    assert config_path("offline", "smoke").name == "offline_smoke.json"
    with pytest.raises(FileNotFoundError, match="known: .*smoke"):
        config_path("offline", "nope")
    path = tmp_path / "mine.json"
    path.write_text('{"seed": 7}')
    assert load_config("offline", str(path), Outer()).seed == 7
