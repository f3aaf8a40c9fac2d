import pytest
import torch

from ilm.qformer import ItemQFormer, build_attention_mask, load_text_tokenizer, tokenize_texts
from tests.ilm.conftest import make_batch


@pytest.fixture
def qformer(qcfg):
    torch.manual_seed(0)
    return ItemQFormer(qcfg).eval()


def test_masks_have_blip2_patterns():
    text_mask = torch.tensor([[1, 1, 0]])  # Q = 2 queries, 3 text positions, the last one padding
    uni = build_attention_mask("unimodal", 2, text_mask)[0].int().tolist()
    bi = build_attention_mask("bidirectional", 2, text_mask)[0].int().tolist()
    causal = build_attention_mask("multimodal_causal", 2, text_mask)[0].int().tolist()
    # columns: q0 q1 t0 t1 t2(pad)
    assert uni == [[1, 1, 0, 0, 0], [1, 1, 0, 0, 0],
                   [0, 0, 1, 1, 0], [0, 0, 1, 1, 0], [0, 0, 1, 1, 0]]
    assert bi == [[1, 1, 1, 1, 0]] * 5
    assert causal == [[1, 1, 0, 0, 0], [1, 1, 0, 0, 0],
                      [1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 0]]


def test_shapes(qformer, qcfg):
    B, L = 3, 5
    cf = torch.randn(B, qcfg.d_cf)
    assert qformer.encode_items(cf).shape == (B, qcfg.n_query, qcfg.hidden)
    hist, mask = torch.randn(B, L, qcfg.d_cf), torch.ones(B, L)
    assert qformer.encode_items(hist, mask).shape == (B, qcfg.n_query, qcfg.hidden)
    items = qformer.item_embeds_for_itc(cf)
    assert items.shape == (B, qcfg.n_query, qcfg.d_embed)
    assert torch.allclose(items.norm(dim=-1), torch.ones(B, qcfg.n_query), atol=1e-5)
    text = qformer.text_embeds_for_itc(torch.randint(0, 100, (B, 6)), torch.ones(B, 6))
    assert text.shape == (B, qcfg.d_embed)
    assert qformer.item_embed(hist, mask).shape == (B, qcfg.d_embed)
    assert qformer.match_logits(cf, torch.randint(0, 100, (B, 6))).shape == (B, 2)
    assert qformer.text_logits(cf, torch.randint(0, 100, (B, 6))).shape == (B, 6, 101)


def test_unimodal_pass_keeps_queries_and_text_apart(qformer, qcfg):
    b = make_batch(qcfg)
    query_out, text_out = qformer._run("unimodal", b["cf_feats"], None, b["text_ids"], b["text_mask"])
    assert torch.allclose(query_out, qformer.encode_items(b["cf_feats"]), atol=1e-5)
    text_only = qformer._run("unimodal", text_ids=b["text_ids"], text_mask=b["text_mask"])[1]
    assert torch.allclose(text_out, text_only, atol=1e-5)


def test_bidirectional_queries_see_the_text(qformer, qcfg):
    b = make_batch(qcfg)
    q1 = qformer._run("bidirectional", b["cf_feats"], None, b["text_ids"], b["text_mask"])[0]
    other = (b["text_ids"] + 1) % qcfg.text_vocab_size
    q2 = qformer._run("bidirectional", b["cf_feats"], None, other, b["text_mask"])[0]
    assert not torch.allclose(q1, q2)


def test_itg_text_sees_the_item_and_only_earlier_text(qformer, qcfg):
    b = make_batch(qcfg)
    logits = qformer.text_logits(b["cf_feats"], b["text_ids"], b["text_mask"])
    later = b["text_ids"].clone()
    later[:, 4:] = (later[:, 4:] + 1) % qcfg.text_vocab_size
    changed = qformer.text_logits(b["cf_feats"], later, b["text_mask"])
    assert torch.allclose(logits[:, :4], changed[:, :4], atol=1e-5)
    assert not torch.allclose(logits[:, 4:], changed[:, 4:])
    other_item = qformer.text_logits(torch.randn_like(b["cf_feats"]), b["text_ids"], b["text_mask"])
    assert not torch.allclose(logits[:, 0], other_item[:, 0])


def test_padded_history_entries_are_ignored(qformer, qcfg):
    hist, mask = torch.randn(2, 4, qcfg.d_cf), torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    noisy = hist.clone()
    noisy[0, 2:] = 100.0
    assert torch.allclose(qformer.encode_items(hist, mask), qformer.encode_items(noisy, mask),
                          atol=1e-5)
    with pytest.raises(ValueError, match="empty"):
        qformer.encode_items(hist, torch.tensor([[0, 0, 0, 0], [1, 1, 1, 1]]))


def test_forward_returns_every_enabled_part_and_their_sum(qformer, qcfg):
    out = qformer.train()(make_batch(qcfg))
    assert set(out.parts) == {"itc", "itm", "itg", "item_item", "user_item"}
    assert torch.isfinite(out.loss)
    assert torch.isclose(out.loss, sum(out.parts.values()))
    out.loss.backward()
    assert qformer.query_tokens.grad.abs().sum() > 0
    assert qformer.cf_proj.weight.grad.abs().sum() > 0


def test_switched_off_parts_are_skipped_and_their_inputs_not_needed(qcfg):
    from dataclasses import replace

    cfg = replace(qcfg, itm=False, itg=False, user_item=False)
    b = make_batch(cfg)
    del b["user_cf_feats"], b["user_cf_mask"]
    assert set(ItemQFormer(cfg)(b).parts) == {"itc", "item_item"}
    del b["pos_cf_feats"]
    with pytest.raises(KeyError, match="pos_cf_feats"):
        ItemQFormer(cfg)(b)


def test_itm_hard_negatives_never_pair_an_item_with_its_own_text(qcfg, monkeypatch):
    from dataclasses import replace

    cfg = replace(qcfg, itc=False, itg=False, item_item=False, user_item=False)
    qformer = ItemQFormer(cfg)
    b = make_batch(cfg, B=4)
    b["item_ids"] = torch.tensor([0, 0, 1, 1])  # rows 0/1 and 2/3 are the same item
    seen = []
    original = qformer.match_logits

    def spy(items, texts, text_masks, item_masks):
        seen.append((items, texts))
        return original(items, texts, text_masks, item_masks)

    monkeypatch.setattr(qformer, "match_logits", spy)
    for seed in range(3):
        torch.manual_seed(seed)
        qformer(b)
    row_of_text = {tuple(t.tolist()): i for i, t in enumerate(b["text_ids"])}
    row_of_item = {tuple(c.tolist()): i for i, c in enumerate(b["cf_feats"])}
    ids = b["item_ids"].tolist()
    for items, texts in seen:
        for k in range(4, 12):  # rows B..3B are the negative pairs
            i, t = row_of_item[tuple(items[k].tolist())], row_of_text[tuple(texts[k].tolist())]
            assert ids[i] != ids[t]


def test_minilm_text_tokenizer_fits_the_default_vocabulary():
    from ilm.config import QFormerConfig

    tok = load_text_tokenizer("minilm")
    ids, mask = tokenize_texts(tok, ["Alien (1979): a crew meets a monster.", "Heat"], max_len=8)
    assert ids.shape == mask.shape and ids.shape[1] <= 8
    assert ids[0, 0] == tok.cls_token_id and mask[1].sum() < mask[0].sum()
    assert len(tok) <= QFormerConfig().text_vocab_size
