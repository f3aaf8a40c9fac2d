"""Shared fixtures of the ilm tests: tiny configs, a tiny random LM, fake CF batches."""
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: needs real LLM weights (run by make test-slow)")


@pytest.fixture
def qcfg():
    from ilm.config import QFormerConfig

    return QFormerConfig.smoke()


@pytest.fixture(scope="module")
def tiny():
    """(model, tokenizer) of a random 2-layer Llama with hidden 32 (``tests.tiny_models``)."""
    from tests.tiny_models import tiny_lm

    return tiny_lm()


def make_batch(cfg, B=4, T=7, L=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    text_mask = torch.ones(B, T, dtype=torch.long)
    text_mask[0, T - 2:] = 0
    user_mask = torch.ones(B, L, dtype=torch.long)
    user_mask[1, 2:] = 0
    return dict(
        cf_feats=torch.randn(B, cfg.d_cf, generator=g),
        text_ids=torch.randint(1, cfg.text_vocab_size, (B, T), generator=g),
        text_mask=text_mask,
        pos_cf_feats=torch.randn(B, cfg.d_cf, generator=g),
        user_cf_feats=torch.randn(B, L, cfg.d_cf, generator=g),
        user_cf_mask=user_mask,
    )
