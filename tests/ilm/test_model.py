import pytest
import torch

from ilm.config import ILMConfig
from ilm.model import ItemLanguageModel
from ilm.splice import build_prompt, make_labels
from tests.tiny_models import save_tiny_lm, tiny_lm


@pytest.fixture
def ilm():
    torch.manual_seed(0)
    lm, tok = tiny_lm()
    return ItemLanguageModel(ILMConfig.smoke(), lm, tok)


def _inputs(ilm, text):
    ids = ilm.tokenizer(build_prompt(text, ilm.cfg.n_query), return_tensors="pt")["input_ids"]
    return ids


def test_frozen_lm_gets_no_gradient_while_qformer_and_adapter_do(ilm):
    ilm.train()
    assert not ilm.lm.training
    ids = _inputs(ilm, "<user> liked <item> , so watch the alien movie")
    labels = make_labels(ids, prompt_lens=2 * ilm.cfg.n_query + 1)
    hist, mask = torch.randn(1, 3, 16), torch.ones(1, 3)
    out = ilm(ids, labels=labels, item_cf_feats=torch.randn(1, 16), user_cf_feats=hist,
              user_cf_mask=mask)
    out.loss.backward()
    assert all(p.grad is None for p in ilm.lm.parameters())
    assert all(not p.requires_grad for p in ilm.lm.parameters())
    assert ilm.adapter.proj.weight.grad.abs().sum() > 0
    assert ilm.qformer.query_tokens.grad.abs().sum() > 0
    assert ilm.qformer.cf_proj.weight.grad.abs().sum() > 0
    trainable, total = ilm.parameter_counts()
    lm_params = sum(p.numel() for p in ilm.lm.parameters())
    assert trainable == total - lm_params


def test_item_vectors_reach_the_lm_output(ilm):
    ids = _inputs(ilm, "i like <item> .")
    a = ilm(ids, item_cf_feats=torch.randn(1, 16)).logits
    b = ilm(ids, item_cf_feats=torch.randn(1, 16)).logits
    assert not torch.allclose(a[:, -1], b[:, -1])


def test_placeholder_without_features_raises(ilm):
    with pytest.raises(ValueError, match="no CF features"):
        ilm.embed(_inputs(ilm, "i like <item> ."))


def test_generate_never_emits_placeholders(ilm):
    ids = _inputs(ilm, "i like <item> .")
    # make the placeholder the LM's favourite next token: generation must still avoid it
    with torch.no_grad():
        ilm.lm.lm_head.weight[ilm.item_token_id] *= 50
    new = ilm.generate(ids, max_new_tokens=5, item_cf_feats=torch.randn(1, 16), do_sample=False)
    assert new.shape == (1, 5)
    assert not bool(torch.isin(new, torch.tensor(list(ilm.token_ids.values()))).any())


def test_gradients_pass_a_4bit_lm_even_after_a_no_grad_generate(tmp_path):
    """bitsandbytes' packed CPU kernel (used after any no-grad forward) has no autograd; the ILM
    must switch it off, or the adapter silently gets zero gradients."""
    pytest.importorskip("bitsandbytes")
    from ilm.lm import load_llm

    lm4, tok4 = load_llm(save_tiny_lm(tmp_path, hidden=64), quantize="nf4")
    assert type(lm4.model.layers[0].mlp.down_proj).__name__ == "Linear4bit"
    ilm = ItemLanguageModel(ILMConfig.smoke(), lm4, tok4)
    ids = _inputs(ilm, "i like <item> . watch the alien movie")
    cf = torch.randn(1, 16)
    ilm.generate(ids, max_new_tokens=2, item_cf_feats=cf, do_sample=False)
    out = ilm(ids, labels=make_labels(ids, prompt_lens=ilm.cfg.n_query + 3), item_cf_feats=cf)
    out.loss.backward()
    assert ilm.adapter.proj.weight.grad.abs().sum() > 0
