"""UniSRec (retrieval/unisrec.py) on a tiny catalogue whose texts separate four clusters of items and
whose users stay inside one cluster: items never seen in training must still be ranked next to
their own cluster (SASRec's id embeddings cannot), and the model must round-trip through save/load."""
import numpy as np
import pytest
import torch

from retrieval.sasrec import SASRec, SASRecConfig
from retrieval.unisrec import MoEAdapter, UniSRec, UniSRecConfig

N_CLUSTERS, PER_CLUSTER, D_TEXT = 4, 15, 16
N_ITEMS = N_CLUSTERS * PER_CLUSTER
COLD = np.array([c * PER_CLUSTER + j for c in range(N_CLUSTERS) for j in (12, 13, 14)])  # never rated


def _data(seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(N_CLUSTERS, D_TEXT))
    cluster = np.repeat(np.arange(N_CLUSTERS), PER_CLUSTER)
    text = centres[cluster] + 0.3 * rng.normal(size=(N_ITEMS, D_TEXT))
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    warm = [np.setdiff1d(np.flatnonzero(cluster == c), COLD) for c in range(N_CLUSTERS)]
    seqs = [rng.choice(warm[u % N_CLUSTERS], size=8) for u in range(160)]
    return text.astype(np.float32), cluster, seqs


def _cfg(**kw):
    return UniSRecConfig(**{"dim": 16, "max_len": 8, "epochs": 40, "batch_size": 32, "dropout": 0.1,
                            "adapter_dropout": 0.0, "lr": 5e-3, "progress": False, **kw})


def _cold_cluster_accuracy(model, cluster) -> float:
    """Share of (cluster, cold item) pairs where a cluster's history scores its own cold items
    above every other cluster's cold items."""
    hist = [np.flatnonzero(cluster == c)[:5] for c in range(N_CLUSTERS)]
    scores = model.score(np.arange(N_CLUSTERS), hist)[:, COLD]                   # (clusters, cold)
    own = cluster[COLD][None, :] == np.arange(N_CLUSTERS)[:, None]
    return float(np.mean([scores[c, own[c]].min() > scores[c, ~own[c]].max() for c in range(N_CLUSTERS)]))


def test_text_items_rank_never_rated_items_with_their_cluster():
    text, cluster, seqs = _data()
    uni = UniSRec(_cfg(), text)
    uni.fit(seqs, N_ITEMS)
    ids = SASRec(SASRecConfig(dim=16, max_len=8, epochs=40, batch_size=32, dropout=0.1, lr=5e-3, progress=False))
    ids.fit(seqs, N_ITEMS)
    assert _cold_cluster_accuracy(uni, cluster) == 1.0
    assert _cold_cluster_accuracy(ids, cluster) < 1.0   # untrained id rows carry no cluster
    # the warm items of a user's own cluster come first too
    top = np.argsort(-uni.score(np.array([0]), [seqs[0][:5]])[0])[:10]
    assert (cluster[top] == cluster[seqs[0][0]]).mean() >= 0.9


def test_with_ids_trains_and_save_load_round_trip(tmp_path):
    text, cluster, seqs = _data(1)
    model = UniSRec(_cfg(epochs=3, with_ids=True), text)
    info = model.fit(seqs, N_ITEMS)
    assert info["loss_curve"][-1] < info["loss_curve"][0]
    model.save(tmp_path / "u.pt")
    back = UniSRec.load(tmp_path / "u.pt")
    assert back.config.with_ids and back.config.n_experts == model.config.n_experts
    hist = [seqs[0], seqs[1][:3]]
    np.testing.assert_allclose(back.score(np.arange(2), hist), model.score(np.arange(2), hist), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(back.item_embeddings(), model.item_embeddings())
    with pytest.raises(ValueError, match="unknown SASRec config fields"):
        SASRec.load(tmp_path / "u.pt")  # a UniSRec file is not a SASRec one


def test_missing_or_mismatched_text_embeddings_are_errors():
    text, _, seqs = _data()
    with pytest.raises(ValueError, match="needs the items' text embeddings"):
        UniSRec(_cfg(epochs=1)).fit(seqs, N_ITEMS)
    with pytest.raises(ValueError, match="59 text embeddings for 60 items"):
        UniSRec(_cfg(epochs=1), text[:-1]).fit(seqs, N_ITEMS)


def test_moe_adapter_whitens_and_mixes_experts():
    torch.manual_seed(0)
    moe = MoEAdapter(4, 3, n_experts=2, dropout=0.0)
    x = torch.randn(5, 4)
    with torch.no_grad():
        moe.gate.weight.zero_()                      # equal gates: the mean of the two experts
        moe.bias[1] = 1.0
        want = 0.5 * (x @ moe.weight[0] + (x - 1.0) @ moe.weight[1])
    torch.testing.assert_close(moe(x), want)


def test_eval_mode_caches_the_item_table_and_training_drops_it():
    text, _, seqs = _data(2)
    model = UniSRec(_cfg(epochs=1), text)
    model.fit(seqs, N_ITEMS)
    first = model.score(np.arange(1), [seqs[0]])
    cached = model.net._frozen
    assert cached is not None
    model.score(np.arange(1), [seqs[1]])            # scoring again (eval() again) reuses the table
    assert model.net._frozen is cached
    model.net.load_state_dict(model.net.state_dict())  # new weights in eval mode drop it too
    assert model.net._frozen is None
    with torch.no_grad():
        model.net.train()                           # leaving eval mode drops the cached table
        assert model.net._frozen is None
        model.net.moe.bias.add_(0.5)
        model.net.eval()
    assert not np.allclose(model.score(np.arange(1), [seqs[0]]), first)
    with torch.no_grad():
        np.testing.assert_allclose(model.net.item_weights().numpy(), model.net.moe(model.net.text).numpy(), atol=1e-6)
