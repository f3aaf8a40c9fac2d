"""The LLM as a scorer (``dialog.llm_scorer``) and its study's choices (``dialog.eval.llm_rerank``):
a tiny LM trained to say one title after the prompt ranks that title first; the prompt keeps the
latest turns; the combination weight is chosen on the rows it is given."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from dialog.eval.llm_rerank import choose_w, lists, metrics, zscore
from dialog.llm_scorer import LLMScorer, LLMScorerConfig, conversation_text

TURNS = [{"role": "user", "text": "i love scary alien movies"},
         {"role": "assistant", "text": "something about space?"},
         {"role": "user", "text": "yes , a scary space movie please"}]


class _Catalog:
    def __init__(self, rows):
        self.items = pd.DataFrame(rows, columns=["title", "year"])


CATALOG = _Catalog([("Funny Robot", 1990), ("Alien Space", 2000), ("Dark Romance", 1990)])


@pytest.fixture(scope="module")
def trained_runtime():
    """The tiny random LM, trained for a few steps to continue the scorer's prompt with
    ' "Alien Space (2000)".'"""
    from ilm.runtime.hf import TransformersRuntime
    from tests.tiny_models import tiny_lm
    model, tok = tiny_lm(seed=1)
    rt = TransformersRuntime(model, tok, spec="tiny", n_ctx=256)
    scorer = LLMScorer(rt, CATALOG)
    ids = rt.tokenize(scorer.prefix(TURNS)) + rt.tokenize(scorer.continuation(1))
    x = torch.tensor([ids])
    for p in model.parameters():
        p.requires_grad_(True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(40):
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return rt


def test_the_scorer_prefers_the_title_the_model_was_trained_to_say(trained_runtime):
    scorer = LLMScorer(trained_runtime, CATALOG)
    s = scorer.score(TURNS, [0, 1, 2])
    assert s.shape == (3,) and int(np.argmax(s)) == 1
    assert scorer.score(TURNS, []).shape == (0,)
    summed = LLMScorer(trained_runtime, CATALOG, LLMScorerConfig(length_norm="sum")).score(TURNS, [0, 1, 2])
    assert np.all(summed <= s + 1e-9)                       # sums of several log-probs are below their mean


def test_prompt_keeps_the_latest_turns_and_the_few_shot_examples():
    text = conversation_text(TURNS, 60)
    assert text.endswith("Fan: yes , a scary space movie please") and "i love scary" not in text
    assert conversation_text([{"role": "user", "text": "x" * 100}], 10) == "x" * 10
    zero = LLMScorer(None, CATALOG).prefix(TURNS)
    few = LLMScorer(None, CATALOG, LLMScorerConfig(mode="few_shot")).prefix(TURNS)
    assert few.endswith(zero[zero.index("Fan: i love"):]) and "Event Horizon" in few and "Event Horizon" not in zero
    assert LLMScorer(None, CATALOG).continuation(1) == ' "Alien Space (2000)".'
    with pytest.raises(ValueError, match="mode"):
        LLMScorerConfig(mode="fine_tuned")


def test_the_weight_is_chosen_on_the_rows_given_and_orders_follow_the_scores():
    assert np.allclose(zscore([1.0, 2.0, 3.0]), [-1.2247, 0.0, 1.2247], atol=1e-4) and not zscore([5.0]).any()
    ids = np.arange(12)
    # the product ranks the label (11) last; the LLM ranks it first: only a large enough w helps
    rows = [{"ids": ids, "labels": [11], "ranker": -ids.astype(float),
             "llm": {"zero_shot": np.where(ids == 11, 10.0, 0.0)}}]
    w, by_w = choose_w(rows, "zero_shot")
    assert by_w["0.0"] == 0.0 and by_w[str(w)] == 1.0 and w > 0
    assert lists(rows, "full")[0][-1] == 11 and lists(rows, "llm_zero_shot")[0][0] == 11
    m = metrics(rows, lists(rows, "llm_zero_shot"), 12)
    assert m["recall@1"] == 1.0 and m["recall@12"] == 1.0 and m["n"] == 1
