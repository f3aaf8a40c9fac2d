"""The ILM pipeline end to end on ml-100k with a tiny random LLM (config ``smoke``), config
loading, and that stage 1 learns item <-> text matching on data where it is learnable."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from training.ilm_config import load_config


def test_configs_load_and_reject_unknown_keys(tmp_path):
    for name in ("smoke", "default", "short", "full"):
        cfg = load_config(name)
        assert cfg.name == name and cfg.stage2.llm
    assert load_config("default").stage2.llm == "qwen2.5-coder-1.5b"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"stage2": {"stepz": 3}}))
    with pytest.raises(ValueError, match="stepz"):
        load_config(str(bad))
    with pytest.raises(FileNotFoundError, match="known"):
        load_config("nope")


def test_stage1_learns_a_learnable_item_text_match():
    from ilm.features import CFTable
    from ilm.qformer import ItemQFormer
    from ilm.stage1_data import Stage1Data
    from training.ilm_stage1 import make_tokenize, retrieval_recall, train_stage1

    cfg = load_config("smoke")
    n = 32
    rng = np.random.default_rng(0)
    train = [rng.permutation(n) for _ in range(8)]
    qcfg = replace(cfg.qformer, d_cf=8, item_item=False, user_item=False)
    data = Stage1Data(train, [f"word{i} film" for i in range(n)], CFTable(rng.normal(size=(n, 8))),
                      make_tokenize(qcfg), holdout_frac=0.0)
    torch.manual_seed(0)
    qformer = ItemQFormer(qcfg)
    before = retrieval_recall(qformer, data, data.train_items)
    info = train_stage1(qformer, data, replace(cfg.stage1, epochs=60, batch_size=16, lr=3e-3))
    after = retrieval_recall(qformer, data, data.train_items)
    assert info["steps"] == 120 and info["items_per_s"] > 0
    assert after["item2text_recall@1"] >= 0.5 > before["item2text_recall@1"]
    assert info["curve"][-1]["itc"] < info["curve"][0]["itc"]


def test_smoke_pipeline_on_ml_100k(tmp_path):
    from ilm.lm import tiny_lm
    from ilm.score import ILMScorer
    from training.ilm_run import run

    cfg = load_config("smoke")
    report = run("ml-100k", cfg, tmp_path / "work", tmp_path / "reports", log=lambda *a: None)
    saved = json.loads((tmp_path / "reports" / "ilm_ml-100k.json").read_text())
    assert saved["dataset"] == "ml-100k" and saved["seed"] == 0 and saved["hardware"]
    assert (tmp_path / "reports" / "ilm_ml-100k_loss.png").stat().st_size > 1000
    md = (tmp_path / "reports" / "ilm_ml-100k.md").read_text()
    assert "Next item" in md and "Genre preference" in md
    models = report["models"]
    assert {"sasrec", "ilm_rerank", "ilm_rerank_only", "ilm_rand_rerank", "ilm_rand_rerank_only"} <= set(models)
    for m in models.values():
        assert m["valid"]["n_users"] == m["test"]["n_users"] == cfg.eval.max_users
        assert 0 <= m["test"]["ndcg@10"] <= m["test"]["hr@10"] <= 1
    # re-ranking only moves targets inside the candidates: HR@n_candidates is the retriever's
    assert cfg.eval.n_candidates == 10
    for name in ("ilm_rerank", "ilm_rerank_only", "ilm_rand_rerank"):
        for k in ("hr@10", "hr@20"):
            assert models[name]["test"][k] == models["sasrec"]["test"][k]
    assert models["ilm_rerank"]["config"]["alpha_retriever"] in cfg.eval.alphas
    assert set(report["stage1"]["ablations"]) == set(cfg.stage1.ablations)
    assert 0 <= report["stage1"]["ablations"]["user_item"]["item2text_recall@10"] <= 1
    assert set(report["stage2"]) == {"ilm", "ilm_rand", "uem"}
    assert report["stage2"]["ilm"]["steps"] == cfg.stage2.steps
    assert set(report["genre_pref"]["methods"]) == {"counting", "text_2", "text_5",
                                                    "qformer_user_tokens", "uem_soft_prompts"}
    assert report["description"]["n_items"] == cfg.eval.n_description
    assert -1 <= report["description"]["item_tokens"]["cosine_mean"] <= 1
    assert report["speed"]["with_item_tokens"]["prompt_tokens_per_s"] > 0
    lm, tok = tiny_lm()
    scorer = ILMScorer.from_checkpoint(tmp_path / "work" / "ml-100k" / "stage2_ilm", lm=lm, tokenizer=tok)
    scores = scorer.score_batch([[1, 2, 3]], [[4, 5, 6]])[0]
    assert scores.shape == (3,) and np.isfinite(scores).all()
