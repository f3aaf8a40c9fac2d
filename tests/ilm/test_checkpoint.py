"""Saving and loading what trains: the stage-1 Q-Former, the ILM (Q-Former, adapter, LoRA) and the
stage-2 recommender around it (next-item head, UEM), and refusing a checkpoint of another base LLM."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ilm.checkpoint import BaseLLMMismatch, load_qformer, read_config, save_qformer
from ilm.config import ILMConfig, LoRAConfig
from ilm.features import CFTable
from ilm.lm import load_llm
from ilm.model import ItemLanguageModel
from ilm.qformer import ItemQFormer
from ilm.rec import ILMRecommender
from ilm.score import ILMScorer
from ilm.uem import UEMConfig, UEMEncoder
from tests.tiny_models import save_tiny_lm, tiny_lm

N_ITEMS = 12
SCORE_ARGS = ([np.array([1, 2, 3]), np.array([7])], [[4, 5, 6, 7], [0, 11]])


def _trained(llm_dir: str, lora: bool = False, user_encoder: str = "qformer"):
    """A stage-2 model on the LLM in ``llm_dir`` whose every trainable tensor has moved away from
    its initial value, as training would move it; and the items' text embeddings."""
    torch.manual_seed(0)
    lm, tok = load_llm(llm_dir, quantize="none")
    cfg = ILMConfig.smoke(llm=llm_dir, quantize="none", lora=LoRAConfig(r=2) if lora else None)
    ilm = ItemLanguageModel(cfg, lm, tok)
    text = np.random.default_rng(1).normal(size=(N_ITEMS, 8)).astype(np.float32)
    uem = UEMEncoder(UEMConfig.smoke(), cfg.n_query, 32) if user_encoder == "uem" else None
    table = CFTable(np.random.default_rng(0).normal(size=(N_ITEMS, cfg.qformer.d_cf)))
    rec = ILMRecommender(ilm, table, user_encoder, uem, text, history_len=5)
    with torch.no_grad():
        for p in rec.trainable():
            p.add_(torch.randn_like(p) * 0.1)
    return rec.eval(), text


@pytest.mark.parametrize("lora,user_encoder", [(False, "qformer"), (True, "qformer"), (False, "uem")])
def test_every_trained_tensor_comes_back_identical(tmp_path, tiny_llm_dir, lora, user_encoder):
    rec, text = _trained(tiny_llm_dir, lora, user_encoder)
    trained = {n: p for n, p in rec.named_parameters() if p.requires_grad}
    assert any(".lora_" in n for n in trained) == lora
    assert any(n.startswith("uem.") for n in trained) == (user_encoder == "uem")
    rec.save_pretrained(tmp_path, extra={"steps": 3})
    loaded = ILMRecommender.from_pretrained(tmp_path, text_embeds=text)  # the LLM loads fresh
    params = dict(loaded.named_parameters())
    for name, p in trained.items():
        assert name in params and torch.equal(params[name], p), name
    assert torch.equal(loaded.ilm.adapter.target_rms, rec.ilm.adapter.target_rms)
    assert loaded.ilm.cfg == rec.ilm.cfg and not loaded.training
    for a, b in zip(ILMScorer(rec).score_batch(*SCORE_ARGS), ILMScorer(loaded).score_batch(*SCORE_ARGS)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    meta = read_config(tmp_path, "ilm")
    assert meta["extra"] == {"steps": 3} and len(meta["base_llm"]["sha256"]) == 64
    assert meta["base_llm"]["name"] == str(Path(tiny_llm_dir).resolve())


def test_the_scorer_loads_onto_a_given_llm(tmp_path, tiny_llm_dir):
    rec, _ = _trained(tiny_llm_dir)
    rec.save_pretrained(tmp_path)
    lm, tok = tiny_lm()                   # the same weights, built in memory instead of loaded
    scorer = ILMScorer.from_checkpoint(tmp_path, lm=lm, tokenizer=tok, batch_size=1)
    assert scorer.model.ilm.lm is lm and scorer.batch_size == 1
    for a, b in zip(ILMScorer(rec).score_batch(*SCORE_ARGS), scorer.score_batch(*SCORE_ARGS)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_loading_refuses_another_base_llm(tmp_path):
    llm_dir = save_tiny_lm(tmp_path / "llm")
    rec, _ = _trained(llm_dir)
    rec.save_pretrained(tmp_path / "ckpt")
    for other in (tiny_lm(seed=1), tiny_lm(hidden=64)):  # other weights; another width
        with pytest.raises(BaseLLMMismatch, match="trained on base LLM .*weights signature"):
            ILMScorer.from_checkpoint(tmp_path / "ckpt", lm=other[0], tokenizer=other[1])
    save_tiny_lm(llm_dir, seed=1)         # the recorded directory now holds another model
    with pytest.raises(BaseLLMMismatch, match="file fingerprint .*sha256 differs"):
        ILMRecommender.from_pretrained(tmp_path / "ckpt")


def test_another_format_version_is_refused(tmp_path, tiny_llm_dir):
    rec, _ = _trained(tiny_llm_dir)
    rec.save_pretrained(tmp_path)
    path = tmp_path / "ilm_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "format_version": 1}))
    with pytest.raises(ValueError, match="format_version 1"):
        ILMRecommender.from_pretrained(tmp_path)


def test_saving_refuses_to_drop_a_trainable_tensor(tmp_path, tiny_llm_dir):
    rec, _ = _trained(tiny_llm_dir)
    rec.ilm.lm.get_input_embeddings().weight.requires_grad_(True)  # trains, but is not the ILM's
    with pytest.raises(ValueError, match="would not hold.*embed_tokens"):
        rec.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="would not hold.*embed_tokens"):
        rec.ilm.save_pretrained(tmp_path)


def test_a_second_ilm_with_lora_needs_its_own_llm(tiny_llm_dir):
    rec, _ = _trained(tiny_llm_dir, lora=True)
    with pytest.raises(ValueError, match="already carries LoRA"):
        ItemLanguageModel(rec.ilm.cfg, rec.ilm.lm.get_base_model(), rec.ilm.tokenizer)


def test_stage1_qformer_round_trip(tmp_path, qcfg):
    torch.manual_seed(0)
    qformer = ItemQFormer(qcfg)
    with torch.no_grad():
        for p in qformer.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    save_qformer(tmp_path, qformer, {"step": 1})
    loaded = load_qformer(tmp_path)
    assert loaded.cfg == qcfg and read_config(tmp_path, "qformer")["extra"] == {"step": 1}
    state = loaded.state_dict()
    for name, t in qformer.state_dict().items():
        assert torch.equal(state[name], t), name
