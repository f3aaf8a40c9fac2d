"""Stage-1 data, stage-2 tasks and collation, the ILM recommender's losses and scores, UEM and the
ranker's scorer: tiny random models on tiny fake data (the checkpoint round trip is in
test_checkpoint.py)."""
import numpy as np
import pytest
import torch

from ilm.config import ITEM_TOKEN, USER_TOKEN, ILMConfig
from ilm.features import CFTable
from ilm.model import ItemLanguageModel
from ilm.rec import ILMRecommender, lm_target_loss, next_item_loss
from ilm.score import ILMScorer
from ilm.stage1_data import Stage1Data
from ilm.tasks import TASKS, TaskBuilder, collate, genre_targets, next_item_example
from ilm.uem import UEMConfig, UEMEncoder

N_ITEMS = 40


def _items():
    genres = [["Comedy"], ["Drama", "Romance"], ["Horror"], ["Action", "Sci-Fi"]]
    return [dict(title=f"movie {i}", year=1980 + i, genres=genres[i % 4],
                 description="a love story about a robot" if i % 2 else "") for i in range(N_ITEMS)]


def _train(seed=0, n_users=6, length=14):
    rng = np.random.default_rng(seed)
    train = [rng.permutation(N_ITEMS)[:length] for _ in range(n_users)]
    ratings = [rng.integers(1, 6, size=length).astype(np.float32) for _ in range(n_users)]
    return train, ratings


@pytest.fixture
def rec(tiny):
    lm, tok = tiny
    torch.manual_seed(0)
    cfg = ILMConfig.smoke()
    ilm = ItemLanguageModel(cfg, lm, tok)
    table = CFTable(np.random.default_rng(0).normal(size=(N_ITEMS, cfg.qformer.d_cf)))
    return ILMRecommender(ilm, table, history_len=8)


def _tokenize(texts):
    ids = torch.tensor([[1] + [2 + len(w) % 50 for w in t.split()][:6] + [0] * (6 - len(t.split()[:6]))
                        for t in texts])
    return ids, (ids > 0).long()


# ---- stage 1 data ------------------------------------------------------------------------------

def test_stage1_holds_out_items_and_builds_qformer_batches(qcfg):
    from ilm.qformer import ItemQFormer

    train, _ = _train()
    table = CFTable(np.random.default_rng(1).normal(size=(N_ITEMS, qcfg.d_cf)))
    data = Stage1Data(train, [f"text of {i}" for i in range(N_ITEMS)], table, _tokenize,
                      holdout_frac=0.2, history_len=4)
    seen = np.unique(np.concatenate(train))
    assert set(data.heldout_items) | set(data.train_items) == set(seen)
    assert not set(data.heldout_items) & set(data.train_items)
    assert len(data.heldout_items) == round(0.2 * len(seen))
    batches = data.epoch(8)
    assert sorted(np.concatenate(batches)) == sorted(data.train_items)  # every training item once
    b = data.batch(batches[0])
    held = set(data.heldout_items)
    assert not held & set(b["pos_item_ids"].tolist())        # held-out items are never positives
    assert b["user_cf_feats"].shape[1] <= 4 and b["user_cf_mask"].any(dim=1).all()
    out = ItemQFormer(qcfg)(b)
    assert set(out.parts) == {"itc", "itm", "itg", "item_item", "user_item"}
    assert torch.isfinite(out.loss)


def test_stage1_co_consumed_items_come_from_the_same_user():
    train = [np.array([0, 1, 2, 3]), np.array([4, 5, 6, 7])]
    table = CFTable(np.zeros((8, 3)))
    data = Stage1Data(train, [str(i) for i in range(8)], table, _tokenize, holdout_frac=0.0, window=1)
    for _ in range(20):
        b = data.batch(np.array([1, 5]))
        assert int(b["pos_item_ids"][0]) in (0, 2) and int(b["pos_item_ids"][1]) in (4, 6)


def test_cf_table_histories_are_right_aligned_and_reject_empty():
    table = CFTable(np.arange(12, dtype=np.float32).reshape(6, 2))
    feats, mask = table.histories([[1, 2, 3], [4]], max_len=2)
    assert mask.tolist() == [[True, True], [False, True]]
    assert feats[0].tolist() == [[4, 5], [6, 7]] and feats[1, 1].tolist() == [8, 9]
    with pytest.raises(ValueError, match="at least one item"):
        table.histories([[1], []], 3)
    with pytest.raises(IndexError):
        table.items([6])


# ---- tasks -------------------------------------------------------------------------------------

def test_tasks_use_only_training_items_and_the_heldout_stays_out():
    train, ratings = _train()
    held = [int(train[0][0]), int(train[1][0])]
    tb = TaskBuilder(train, ratings, _items(), exclude_items=held, seed=0)
    for _ in range(50):
        ex = tb.sample("description")
        assert ex.items[0] not in held and ex.target.startswith(f"movie {ex.items[0]} (")
        nxt = tb.next_item()
        user = next(u for u, s in enumerate(train) if any(np.array_equal(nxt.history, s[:k]) for k in range(len(s))))
        assert nxt.next_item == train[user][len(nxt.history)]   # the item right after the history
        assert nxt.items == [int(i) for i in nxt.history[-3:]]
    with pytest.raises(ValueError, match="unknown task"):
        tb.sample("nope")


def test_next_item_requests_describe_the_target_and_come_at_the_asked_rate():
    from ilm.tasks import request_text

    train, ratings = _train()
    assert TaskBuilder(train, ratings, _items(), seed=0).next_item().prompt.endswith("watch next?")
    tb = TaskBuilder(train, ratings, _items(), seed=0, request_prob=0.5)
    exs = [tb.next_item() for _ in range(200)]
    said = [ex for ex in exs if " They said: " in ex.prompt]
    assert 60 < len(said) < 140
    for ex in said:
        assert ex.prompt.endswith("They said: " + request_text(_items()[ex.next_item]))
    assert request_text({"genres": ["Comedy", "Romance", "Drama"], "year": 1994}) == \
        "I'd like a comedy romance movie from the 1990s."
    assert request_text({"genres": [], "year": None}) == "I'd like a good movie."
    with pytest.raises(ValueError, match="request_prob"):
        TaskBuilder(train, ratings, _items(), request_prob=1.5)


def test_genre_targets_count_only_positive_ratings():
    genres = [["Comedy"], ["Drama"], ["Drama", "War"]]
    assert genre_targets([0, 1, 2], [5, 4, 4.5], genres) == ["Drama", "Comedy", "War"]
    assert genre_targets([0, 1], [2, 3], genres) == []


def test_collate_expands_placeholders_and_labels_only_targets(rec):
    train, ratings = _train()
    tb = TaskBuilder(train, ratings, _items(), seed=1)
    examples = [tb.sample(t) for t in TASKS]
    tok, Q = rec.ilm.tokenizer, rec.ilm.cfg.n_query
    b = collate(examples, tok, Q)
    item_id, user_id = tok.convert_tokens_to_ids([ITEM_TOKEN, USER_TOKEN])
    assert int((b.input_ids == item_id).sum()) == len(b.item_ids) * Q
    assert int((b.input_ids == user_id).sum()) == len(b.histories) * Q
    assert b.labels[0].eq(-100).all()                         # next_item: no target text
    for row in range(1, len(TASKS)):
        labelled = (b.labels[row] != -100).nonzero().flatten()
        assert int(labelled.min()) == int(b.last_prompt[row]) + 1   # targets start after the prompt
    assert b.next_items.tolist()[0] >= 0 and b.next_items.tolist()[1:] == [-1] * (len(TASKS) - 1)
    text = collate(examples, tok, Q, "text", titles=[f"movie {i}" for i in range(N_ITEMS)])
    assert text.histories == [] and int((text.input_ids == user_id).sum()) == 0
    with pytest.raises(ValueError, match="user_encoder"):
        collate(examples, tok, Q, "bogus")


# ---- the recommender ---------------------------------------------------------------------------

def test_losses_train_qformer_adapter_head_but_not_the_llm(rec):
    train, ratings = _train()
    tb = TaskBuilder(train, ratings, _items(), seed=2)
    b = collate([tb.sample(t) for t in TASKS], rec.ilm.tokenizer, rec.ilm.cfg.n_query)
    parts = rec.losses(b, negatives=np.arange(10))
    assert set(parts) == {"lm", "next_item"}
    sum(parts.values()).backward()
    for name in ("ilm.qformer.query_tokens", "ilm.adapter.proj.weight", "head.weight"):
        grad = dict(rec.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert all(p.grad is None for p in rec.ilm.lm.parameters())


def test_next_item_loss_and_lm_target_loss_match_reference():
    users = torch.nn.functional.normalize(torch.randn(3, 4), dim=-1)
    items = torch.nn.functional.normalize(torch.randn(5, 4), dim=-1)
    targets = torch.tensor([0, 4, 2])
    ref = torch.nn.functional.cross_entropy(users @ items.t() / 0.1, targets)
    assert torch.allclose(next_item_loss(users, items, targets, 0.1), ref)
    head = torch.nn.Linear(4, 7, bias=False)
    hidden, labels = torch.randn(2, 5, 4), torch.tensor([[-100, -100, 3, 1, -100], [-100, 2, 2, 6, 0]])
    full = torch.nn.functional.cross_entropy(head(hidden)[:, :-1].reshape(-1, 7), labels[:, 1:].reshape(-1))
    assert torch.allclose(lm_target_loss(hidden, labels, head), full)


def test_batched_scores_equal_one_user_at_a_time(rec):
    rec.eval()
    histories = [np.array([1, 2, 3, 4]), np.array([7]), np.array([9, 8, 7, 6, 5])]
    cands = [[0, 1, 2], [5, 6, 7, 8], [10]]
    scorer = ILMScorer(rec, n_recent=3, batch_size=3)
    together = scorer.score_batch(histories, cands)
    alone = [scorer.score_batch([h], [c])[0] for h, c in zip(histories, cands)]
    for a, b in zip(together, alone):
        assert a.shape == b.shape and np.allclose(a, b, atol=1e-5)
    with pytest.raises(ValueError, match="at least one history item"):
        scorer.score_batch([[]], [[1]])


def test_ranker_hook_reads_history_likes_and_words_and_is_zero_without_history(rec):
    from dialog.state import DialogState
    from ilm.score import history_of

    scorer = ILMScorer(rec)
    state = DialogState()
    assert scorer(state, [1, 2, 3]).tolist() == [0, 0, 0]
    state.liked = [4, 5]
    scores = scorer(state, [1, 2, 3])
    assert scores.shape == (3,) and np.isfinite(scores).all() and np.ptp(scores) > 0
    state.seen, state.liked = [7, 6, 4], [4, 5]
    assert history_of(state) == [7, 6, 4, 5]          # watched in order, then new likes, each once
    assert np.allclose(scorer(state, [1, 2, 3]), scorer.score_batch([[7, 6, 4, 5]], [[1, 2, 3]])[0])
    state.messages = [{"role": "user", "text": "something funny"}]
    said = scorer.score_batch([[7, 6, 4, 5]], [[1, 2, 3]], ["something funny"])[0]
    assert np.allclose(scorer(state, [1, 2, 3]), said)


def test_uem_soft_prompts_replace_user_placeholders(tiny):
    lm, tok = tiny
    cfg = ILMConfig.smoke()
    ilm = ItemLanguageModel(cfg, lm, tok)
    text = np.random.default_rng(0).normal(size=(N_ITEMS, 8)).astype(np.float32)
    uem = UEMEncoder(UEMConfig.smoke(), cfg.n_query, 32)
    rec = ILMRecommender(ilm, CFTable(np.zeros((N_ITEMS, cfg.qformer.d_cf))), "uem", uem, text)
    out = uem(torch.randn(2, 9, 8), torch.ones(2, 9, dtype=torch.bool))  # longer than max_len: cut
    assert out.shape == (2, cfg.n_query, 32)
    b = collate([next_item_example(np.array([1, 2, 3]), 2, target=4)], tok, cfg.n_query, "uem")
    parts = rec.losses(b, np.arange(5))
    parts["next_item"].backward()
    assert uem.inp.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="UEMEncoder"):
        ILMRecommender(ilm, CFTable(np.zeros((3, 2))), "uem")


def test_lr_scale_decays_over_the_time_budget_when_it_runs_out_first():
    from training.ilm_stage2 import lr_scale

    assert lr_scale(0, 0.0, warmup=4, steps=100) == pytest.approx(0.25)        # warm-up
    assert lr_scale(50, 0.0, warmup=4, steps=100) == pytest.approx(0.5)        # half-way by steps
    # 10 of 800 steps done but half the time budget spent: the rate is already at half
    assert lr_scale(10, 360.0, warmup=4, steps=800, time_budget_s=720.0) == pytest.approx(0.5)
    assert lr_scale(10, 720.0, warmup=4, steps=800, time_budget_s=720.0) == pytest.approx(0.0, abs=1e-12)
    # without a budget, time is ignored
    assert lr_scale(10, 1e6, warmup=4, steps=800) > 0.99
