"""Stage 1 with a frozen text side, its measures (buckets, ridge) and the co-occurrence CF input,
on tiny synthetic catalogues whose answers are known."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from ilm.config import QFormerConfig
from ilm.features import CFTable
from ilm.qformer import ItemQFormer
from ilm.stage1_data import Stage1Data
from retrieval.cooc import CoocConfig, CoocFactors
from training.ilm_config import Stage1Config
from training.ilm_stage1 import heldout_eval, train_stage1
from training.ilm_stage1_eval import heldout_metrics, recall_at, ridge_probe


def _catalogue(n=240, d_cf=8, d_text=16, seed=0):
    """Text embeddings that are a fixed linear map of the CF vectors: held-out items' texts can be
    found from their CF vectors by anything that learns the map from the training items."""
    rng = np.random.default_rng(seed)
    cf = rng.normal(size=(n, d_cf)).astype(np.float32)
    text = (cf @ rng.normal(size=(d_cf, d_text))).astype(np.float32)
    users = [rng.choice(n, size=30, replace=False) for _ in range(40)]
    users.append(np.arange(n))  # every item has a training interaction
    return cf, text, users


def _data(cf, text, users, **kw):
    return Stage1Data(users, [f"item {i}" for i in range(len(cf))], CFTable(cf), None,
                      holdout_frac=0.25, val_frac=0.15, text_targets=text, **kw)


def test_recall_counts_ties_against_the_model():
    assert recall_at(torch.eye(4), ks=(1,))["item2text_recall@1"] == 1.0
    assert recall_at(torch.ones(4, 4), ks=(1,))["item2text_recall@1"] == 0.0


def test_heldout_metrics_buckets_are_measured_among_their_own_items():
    n = 30
    feats = torch.eye(n)[:, None]                     # each item matches only its own text
    counts = np.array([1] * 10 + [10] * 10 + [100] * 10)
    out = heldout_metrics(feats, torch.eye(n), counts, np.arange(n))
    assert out["recall@10"] == 1.0 and out["recall@10_min5"] == 1.0
    assert [out[b]["n_items"] for b in ("lt5", "5to50", "gt50")] == [10, 10, 10]
    assert out["min5"]["n_items"] == 20 and out["lt5"]["chance_recall@10"] == 1.0
    shuffled = heldout_metrics(torch.eye(n)[torch.randperm(n, generator=torch.Generator().manual_seed(0))][:, None],
                               torch.eye(n), counts, np.arange(n))
    assert shuffled["item2text_recall@1"] < 0.2


def test_ridge_probe_finds_an_exact_linear_map():
    cf, text, users = _catalogue()
    data = _data(cf, text, users)
    out = ridge_probe(cf, text, data.train_items, data.val_items, data.heldout_items, data.counts)
    assert out["item2text_recall@1"] >= 0.95 and out["alpha"] <= 1.0


def test_frozen_text_side_learns_held_out_items_and_random_init_is_at_chance():
    cf, text, users = _catalogue()
    data = _data(cf, text, users)
    qcfg = QFormerConfig.smoke(d_cf=cf.shape[1], text_side="frozen", d_text=text.shape[1],
                               itm=False, itg=False, item_item=False, user_item=False)
    torch.manual_seed(0)
    qformer = ItemQFormer(qcfg)
    before = heldout_eval(qformer, data, data.heldout_items)
    info = train_stage1(qformer, data, Stage1Config(epochs=60, batch_size=64, lr=3e-3, patience=10))
    after = heldout_eval(qformer, data, data.heldout_items)
    chance = 10 / len(data.heldout_items)
    assert before["recall@10"] < 3 * chance                          # random init: about chance
    assert after["recall@10"] >= 0.8 and after["recall@10"] > 4 * before["recall@10"]
    assert info["val_curve"][0]["val_recall@10"] < info["val_curve"][info["best_epoch"] - 1]["val_recall@10"]
    assert not set(data.val_items) & set(data.train_items)
    assert not set(data.heldout_items) & set(data.train_items)


def test_patience_keeps_the_best_epoch():
    cf, text, users = _catalogue(n=120)
    data = _data(cf, text, users)
    qcfg = QFormerConfig.smoke(d_cf=cf.shape[1], text_side="frozen", d_text=text.shape[1],
                               itm=False, itg=False, item_item=False, user_item=False)
    torch.manual_seed(0)
    qformer = ItemQFormer(qcfg)
    info = train_stage1(qformer, data, Stage1Config(epochs=40, batch_size=32, lr=1e-2, patience=3))
    best = max(p["val_recall@10"] for p in info["val_curve"])
    assert info["val_curve"][info["best_epoch"] - 1]["val_recall@10"] == best
    assert heldout_eval(qformer, data, data.val_items)["recall@10"] == best  # the kept weights
    assert info["epochs_run"] <= info["best_epoch"] + 3


def test_frozen_side_needs_targets_and_the_learned_side_is_unchanged():
    qformer = ItemQFormer(QFormerConfig.smoke(text_side="frozen", d_text=16))
    with pytest.raises(KeyError, match="text_target"):
        qformer({"cf_feats": torch.randn(4, 16), "item_ids": torch.arange(4)})
    learned = ItemQFormer(QFormerConfig.smoke())
    assert learned.target_proj is None
    with pytest.raises(ValueError, match="text_side"):
        QFormerConfig(text_side="bert")
    with pytest.raises(ValueError, match="text_side='frozen'"):
        learned.target_embeds_for_itc(torch.randn(2, 384))


def test_stage1_data_keeps_validation_items_out_of_training_and_positives():
    cf, text, users = _catalogue(n=60)
    data = _data(cf, text, users)
    batch = data.batch(data.epoch(16)[0])
    assert "text_ids" not in batch and batch["text_target"].shape == (16, text.shape[1])
    excluded = set(data.val_items) | set(data.heldout_items)
    for pos, item in zip(batch["pos_item_ids"].tolist(), batch["item_ids"].tolist()):
        assert pos not in excluded or pos == item   # a positive is a training item (or itself)
    with pytest.raises(ValueError, match="holdout_frac"):
        Stage1Data(users, ["x"] * 60, CFTable(cf), None, holdout_frac=0.5, val_frac=0.5)


def test_cooc_factors_separate_two_taste_groups_deterministically():
    rng = np.random.default_rng(0)
    group_a, group_b = np.arange(0, 20), np.arange(20, 40)
    users = [rng.choice(group_a if u % 2 else group_b, size=8, replace=False) for u in range(200)]
    model = CoocFactors(CoocConfig(dim=4))
    model.fit(users, 41)
    emb = model.item_embeddings()
    again = CoocFactors(CoocConfig(dim=4))
    again.fit(users, 41)
    assert np.allclose(emb, again.item_embeddings())
    assert emb.shape == (41, 4) and not emb[40].any()                 # item 40: never consumed
    unit = emb[:40] / np.linalg.norm(emb[:40], axis=1, keepdims=True)
    sim = unit @ unit.T
    within = (sim[:20, :20].mean() + sim[20:, 20:].mean()) / 2
    assert within > sim[:20, 20:].mean() + 0.5


def test_cf_inputs_concatenate_scaled_tables(tmp_path):
    from types import SimpleNamespace

    from training.cf_inputs import cf_embeddings, parse_cf_input

    rng = np.random.default_rng(0)
    users = [rng.choice(30, size=6, replace=False) for _ in range(50)]
    sasrec = SimpleNamespace(item_embeddings=lambda: 100 * np.ones((30, 3), np.float32))
    prep = SimpleNamespace(sasrec=sasrec, split=SimpleNamespace(train=users, n_items=30))
    both = cf_embeddings("sasrec+cooc", prep, tmp_path)
    assert both.shape == (30, 3 + CoocConfig().dim)
    assert abs(np.linalg.norm(both[:, :3], axis=1).mean() - 1.0) < 1e-5
    assert (tmp_path / "cf_cooc.npy").is_file()
    assert np.allclose(cf_embeddings("cooc", prep, tmp_path), np.load(tmp_path / "cf_cooc.npy"))
    with pytest.raises(ValueError, match="one of"):
        parse_cf_input("sasrec+lightgcn")
    assert replace(Stage1Config(), cf_input="cooc").cf_input == "cooc"


def test_stage1_command_writes_its_report_and_the_probes_section(tmp_path):
    import json

    from training.ilm_stage1 import main

    cfg = {"qformer": {"n_query": 2, "hidden": 32, "n_layers": 1, "n_heads": 4, "intermediate": 64,
                       "n_cf_tokens": 2, "d_embed": 16, "dropout": 0.0, "text_side": "frozen",
                       "itm": False, "itg": False},
           "sasrec": {"epochs": 1, "dim": 16, "max_len": 20, "progress": False},
           "stage1": {"epochs": 3, "patience": 2, "batch_size": 256, "lr": 1e-3,
                      "ablations": ["item_text", "user_item"], "compare_cf_inputs": ["cooc"]}}
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(cfg))
    out = tmp_path / "reports"
    main(["--dataset", "ml-100k", "--config", str(path), "--work", str(tmp_path / "work"), "--out", str(out)])
    report = json.loads((out / "ilm_stage1_ml-100k.json").read_text())
    s1 = report["stage1"]
    assert set(s1["ablations"]) == {"item_text", "user_item"} and set(s1["cf_inputs"]) == {"sasrec", "cooc"}
    for entry in (s1["ridge"], s1["random_init"], *s1["ablations"].values()):
        assert 0 <= entry["recall@10"] <= 1 and entry["min5"]["n_items"] + entry["lt5"]["n_items"] == s1["heldout_items"]
    assert s1["ablations"]["item_text"]["epochs_run"] <= 3
    md = (out / "ilm_stage1_ml-100k.md").read_text()
    assert "ridge (sasrec" in md and "Q-Former on cooc" in md and "avx" in md.lower()
    assert (out / "ilm_stage1_ml-100k.png").stat().st_size > 1000
    probes = json.loads((out / "ilm_probes_ml-100k.json").read_text())
    assert set(probes["stage1"]["ridge"]) == {"recall@10", "recall@10_min5"}
    assert s1["feeds_stage2"] in s1["ablations"]
    assert probes["stage1"]["qformer"]["recall@10"] == s1["ablations"][s1["feeds_stage2"]]["recall@10"]
    assert (tmp_path / "work" / "ml-100k" / "stage1").is_dir()
