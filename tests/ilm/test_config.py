import json

import pytest

from ilm.config import ILMConfig, LoRAConfig, QFormerConfig


def test_smoke_config_is_tiny_and_round_trips_through_dict():
    cfg = ILMConfig.smoke(llm="smollm2-135m")
    assert (cfg.qformer.hidden, cfg.qformer.n_layers, cfg.qformer.n_query) == (32, 2, 4)
    assert cfg.n_query == cfg.qformer.n_query
    assert ILMConfig.from_dict(cfg.to_dict()) == cfg
    with_lora = ILMConfig.smoke(lora=LoRAConfig(r=4, target_modules=("q_proj", "k_proj")))
    assert ILMConfig.from_dict(json.loads(json.dumps(with_lora.to_dict()))) == with_lora


def test_hidden_must_divide_into_heads():
    with pytest.raises(ValueError, match="divisible"):
        QFormerConfig(hidden=30, n_heads=4)
