"""Collaborative-filtering recommenders (pop, BPR, SASRec) and the embeddings hand-off format,
on tiny synthetic interaction data made here."""
import numpy as np
import pytest
import torch

from retrieval.bpr import BPR, BPRConfig, _sample_negatives
from retrieval.embeddings import load_embeddings, save_embeddings
from retrieval.pop import Popularity
from retrieval.sasrec import SASRec, SASRecConfig, full_softmax_ce

N_ITEMS = 12


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models train faster on one thread (no sync overhead on a busy 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def successor_seqs(n_users=48, n_items=N_ITEMS, seed=0):
    """Each user walks i -> i+1 (mod n_items) from a random start: the next item is always obvious."""
    rng = np.random.default_rng(seed)
    return [(rng.integers(n_items) + np.arange(rng.integers(6, 14))) % n_items for _ in range(n_users)]


def two_group_data(n_users=40, n_items=20, seed=0):
    """Users 0..n/2-1 like items 0..9, the others items 10..19; one liked item per user held out."""
    rng = np.random.default_rng(seed)
    train, held_out = [], []
    for u in range(n_users):
        group = np.arange(10) + (0 if u < n_users // 2 else 10)
        items = rng.permutation(group)
        train.append(items[:-1].astype(np.int64))
        held_out.append(int(items[-1]))
    return train, np.array(held_out), n_items


def tiny_sasrec(**kw):
    cfg = dict(max_len=8, dim=32, n_layers=1, n_heads=2, dropout=0.0, lr=1e-2, epochs=30,
               batch_size=16, seed=0, progress=False)
    cfg.update(kw)
    return SASRec(SASRecConfig(**cfg))


# -- popularity ---------------------------------------------------------------------------------

def test_pop_ranks_items_by_train_count():
    model = Popularity()
    out = model.fit([np.array([2, 1, 2]), np.array([2, 0, 1])], n_items=4)
    scores = model.score(np.array([0, 1]), [np.array([]), np.array([])])
    assert scores.shape == (2, 4) and scores.dtype == np.float32
    assert list(np.argsort(-scores[0], kind="stable")) == [2, 1, 0, 3]
    np.testing.assert_array_equal(scores[0], [1, 2, 3, 0])
    assert out["loss_curve"] == []
    assert model.item_embeddings().shape == (4, 1)
    assert np.argmax(model.item_embeddings()[:, 0]) == 2
    np.testing.assert_array_equal(model.user_embeddings([np.array([1])] * 3), np.ones((3, 1)))


# -- BPR ----------------------------------------------------------------------------------------

def test_bpr_negatives_avoid_seen_items():
    train, _, n_items = two_group_data()
    users = np.concatenate([np.full(len(s), u) for u, s in enumerate(train)])
    seen = np.unique(users * n_items + np.concatenate(train))
    neg = _sample_negatives(users, n_items, seen, np.random.default_rng(0))
    assert not np.isin(users * n_items + neg, seen).any()


def test_bpr_loss_goes_down_and_learns_user_groups():
    train, held_out, n_items = two_group_data()
    model = BPR(BPRConfig(dim=8, lr=0.05, reg=1e-4, epochs=30, batch_size=64, seed=0))
    out = model.fit(train, n_items)
    curve = out["loss_curve"]
    assert len(curve) == 30 and curve[-1] < 0.5 * curve[0]
    users = np.arange(len(train))
    scores = model.score(users, train)
    assert scores.shape == (len(train), n_items) and scores.dtype == np.float32
    # the held-out item of the user's own group beats every item of the other group
    other = np.where(users[:, None] < len(train) // 2, np.arange(10, 20), np.arange(10))
    beats = scores[users, held_out][:, None] > np.take_along_axis(scores, other, axis=1)
    assert beats.all(axis=1).mean() >= 0.9
    assert model.item_embeddings().shape == (n_items, 8)
    np.testing.assert_array_equal(model.user_embeddings(train), model.user_embeds.numpy())


def test_bpr_unknown_user_is_scored_from_its_history():
    train, _, n_items = two_group_data()
    model = BPR(BPRConfig(dim=8, lr=0.05, reg=1e-4, epochs=20, batch_size=64, seed=0))
    model.fit(train, n_items)
    scores = model.score(np.array([-1]), [np.array([0, 1, 2])])[0]
    assert scores[3:10].mean() > scores[10:].mean()


def test_bpr_same_seed_same_model():
    train, _, n_items = two_group_data()
    cfg = BPRConfig(dim=8, epochs=3, batch_size=64, seed=7)
    a, b = BPR(cfg), BPR(cfg)
    a.fit(train, n_items)
    b.fit(train, n_items)
    np.testing.assert_array_equal(a.item_embeddings(), b.item_embeddings())


# -- SASRec -------------------------------------------------------------------------------------

def test_sasrec_learns_successor_pattern():
    seqs = successor_seqs()
    model = tiny_sasrec()
    out = model.fit(seqs, N_ITEMS)
    curve = out["loss_curve"]
    assert len(curve) == 30 and curve[-1] < 0.3 * curve[0]
    histories = [(np.arange(length) + i - length + 1) % N_ITEMS for i in range(N_ITEMS) for length in (1, 3, 7)]
    scores = model.score(np.zeros(len(histories), np.int64), histories)
    assert scores.shape == (len(histories), N_ITEMS) and scores.dtype == np.float32
    top1 = scores.argmax(1)
    np.testing.assert_array_equal(top1, [(h[-1] + 1) % N_ITEMS for h in histories])


def test_sasrec_user_embedding_scores_like_model_and_ignores_padding():
    seqs = successor_seqs()
    model = tiny_sasrec(epochs=2)
    model.fit(seqs, N_ITEMS)
    histories = [np.array([3]), np.array([1, 2, 3, 4, 5]), np.arange(20) % N_ITEMS]   # last one > max_len
    users = model.user_embeddings(histories)
    items = model.item_embeddings()
    assert users.shape == (3, 32) and items.shape == (N_ITEMS, 32)
    np.testing.assert_allclose(users @ items.T, model.score(np.arange(3), histories), rtol=1e-5, atol=1e-5)
    # scoring a history alone or batched next to longer (more padded) ones gives the same result
    alone = model.score(np.array([0]), histories[:1])
    np.testing.assert_allclose(alone[0], model.score(np.arange(3), histories)[0], rtol=1e-5, atol=1e-5)
    # only the last max_len items of a long history matter
    np.testing.assert_allclose(model.score(np.array([0]), [histories[2][-8:]]),
                               model.score(np.array([0]), [histories[2]]), rtol=1e-5, atol=1e-5)


def test_sasrec_trains_on_every_transition_of_long_sequences():
    model = tiny_sasrec(max_len=4)
    rows = model._windows([np.arange(11), np.array([5]), np.array([1, 2])])
    transitions = {(int(r[t]), int(r[t + 1])) for r in rows for t in range(len(r) - 1)}
    assert transitions == {(i, i + 1) for i in range(10)} | {(1, 2)}
    assert all(len(r) <= 5 for r in rows)


def test_sasrec_same_seed_same_model():
    seqs = successor_seqs()
    a, b = tiny_sasrec(epochs=2, dropout=0.2), tiny_sasrec(epochs=2, dropout=0.2)
    a.fit(seqs, N_ITEMS)
    b.fit(seqs, N_ITEMS)
    np.testing.assert_array_equal(a.item_embeddings(), b.item_embeddings())



def test_sasrec_fit_is_seeded_and_leaves_the_callers_rng_alone():
    seqs = successor_seqs()
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    plain = tiny_sasrec(epochs=2, dropout=0.2)
    plain.fit(seqs, N_ITEMS)
    torch.testing.assert_close(torch.rand(3), expected_next)           # caller's RNG stream untouched
    # a callback that draws random numbers does not change the model
    noisy = tiny_sasrec(epochs=2, dropout=0.2)
    noisy.fit(seqs, N_ITEMS, on_epoch_end=lambda epoch, model: torch.rand(100))
    np.testing.assert_array_equal(plain.item_embeddings(), noisy.item_embeddings())
    other_seed = tiny_sasrec(epochs=2, dropout=0.2, seed=1)
    other_seed.fit(seqs, N_ITEMS)
    assert not np.array_equal(plain.item_embeddings(), other_seed.item_embeddings())


def test_sasrec_save_load_round_trip_gives_identical_scores(tmp_path):
    model = tiny_sasrec(epochs=2, dropout=0.2)
    model.fit(successor_seqs(), N_ITEMS)
    model.save(tmp_path / "sasrec.pt")
    loaded = SASRec.load(tmp_path / "sasrec.pt")
    assert loaded.config == model.config and loaded.n_items == N_ITEMS
    assert not loaded.net.training
    histories = [np.array([3]), np.array([1, 2, 3, 4, 5]), np.arange(20) % N_ITEMS]
    np.testing.assert_array_equal(loaded.score(np.arange(3), histories), model.score(np.arange(3), histories))
    np.testing.assert_array_equal(loaded.item_embeddings(), model.item_embeddings())


def test_sasrec_load_refuses_incomplete_or_foreign_files(tmp_path):
    model = tiny_sasrec(epochs=1)
    model.fit(successor_seqs(), N_ITEMS)
    bare = tmp_path / "bare.pt"                                          # a bare state_dict
    torch.save(model.net.state_dict(), bare)
    with pytest.raises(ValueError, match="bare.pt is not a SASRec checkpoint: missing state_dict, config, n_items"):
        SASRec.load(bare)
    model.save(tmp_path / "ok.pt")
    ckpt = torch.load(tmp_path / "ok.pt", weights_only=True)
    no_n = tmp_path / "no_n_items.pt"
    torch.save({k: v for k, v in ckpt.items() if k != "n_items"}, no_n)
    with pytest.raises(ValueError, match="missing n_items"):
        SASRec.load(no_n)
    odd = tmp_path / "odd_config.pt"
    torch.save({**ckpt, "config": {**ckpt["config"], "n_experts": 4}}, odd)
    with pytest.raises(ValueError, match="unknown SASRec config fields.*n_experts"):
        SASRec.load(odd)
    wrong = tmp_path / "wrong_dim.pt"
    torch.save({**ckpt, "config": {**ckpt["config"], "dim": 16, "n_heads": 1}}, wrong)
    with pytest.raises(ValueError, match="weights do not fit"):
        SASRec.load(wrong)


def test_sasrec_save_needs_a_fitted_model(tmp_path):
    with pytest.raises(RuntimeError, match="not fitted"):
        tiny_sasrec().save(tmp_path / "x.pt")


@pytest.mark.parametrize("chunk", [7, 64, 1000])
def test_full_softmax_ce_matches_cross_entropy_and_its_gradients(chunk):
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(50, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(30, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 30, (50,), generator=gen)
    ref = torch.nn.functional.cross_entropy(hidden @ weights.T, targets)
    ref_grads = torch.autograd.grad(2.5 * ref, (hidden, weights))
    out = full_softmax_ce(hidden, weights, targets, chunk)
    grads = torch.autograd.grad(2.5 * out, (hidden, weights))
    torch.testing.assert_close(out, ref)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r)


def test_full_softmax_ce_hand_computed():
    # two items, logits (0, ln 3) for one step with target 1: CE = ln 4 - ln 3; d/dlogits = (1/4, -1/4)
    hidden = torch.tensor([[1.0]], requires_grad=True)
    weights = torch.tensor([[0.0], [float(np.log(3.0))]], requires_grad=True)
    loss = full_softmax_ce(hidden, weights, torch.tensor([1]))
    loss.backward()
    assert abs(loss.item() - float(np.log(4 / 3))) < 1e-6
    torch.testing.assert_close(weights.grad, torch.tensor([[0.25], [-0.25]]))
    torch.testing.assert_close(hidden.grad, torch.tensor([[-0.25 * float(np.log(3.0))]]))

# -- embeddings file format ---------------------------------------------------------------------

def test_embeddings_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    items = rng.normal(size=(7, 4)).astype(np.float32)
    users = rng.normal(size=(3, 4)).astype(np.float32)
    meta = {"model": "bpr", "config": {"dim": 4}, "dataset": "toy", "user_repr": "learned p_u"}
    save_embeddings(tmp_path, "bpr-toy", items, users, meta)
    items2, users2, meta2 = load_embeddings(tmp_path, "bpr-toy")
    np.testing.assert_array_equal(items2, items)
    np.testing.assert_array_equal(users2, users)
    assert items2.dtype == np.float32
    assert meta2["n_items"] == 7 and meta2["n_users"] == 3 and meta2["dim"] == 4
    assert meta2["config"] == {"dim": 4} and meta2["user_repr"] == "learned p_u"


def test_embeddings_without_users_and_bad_input(tmp_path):
    meta = {"model": "pop", "config": {}, "dataset": "toy", "user_repr": "none"}
    save_embeddings(tmp_path, "pop", np.ones((5, 1)), None, meta)
    items, users, meta2 = load_embeddings(tmp_path, "pop")
    assert users is None and items.shape == (5, 1) and meta2["n_users"] == 0
    with pytest.raises(ValueError, match="user_repr"):
        save_embeddings(tmp_path, "x", np.ones((5, 2)), None, {"model": "pop", "config": {}, "dataset": "t"})
    with pytest.raises(ValueError, match="user_embeds"):
        save_embeddings(tmp_path, "x", np.ones((5, 2)), np.ones((3, 4)), meta)
    with pytest.raises(FileNotFoundError):
        load_embeddings(tmp_path, "missing")


def test_sasrec_attention_is_causal():
    model = tiny_sasrec(epochs=1)
    model.fit(successor_seqs(), N_ITEMS)
    ids = model._pad([np.array([1, 2, 3, 4, 5])], 7)
    changed = ids.clone()
    changed[0, -1] = 9                                        # a different last item
    with torch.no_grad():
        h, h2 = model.net(ids), model.net(changed)
    torch.testing.assert_close(h[:, :-1], h2[:, :-1])         # earlier steps never see later items
    assert not torch.allclose(h[:, -1], h2[:, -1])
