import pytest
import torch

from ilm.config import AdapterConfig
from ilm.splice import Adapter, add_item_tokens, build_prompt, embedding_rms, make_labels, splice_embeds
from tests.tiny_models import tiny_lm


@pytest.fixture
def lm_tok():
    return tiny_lm()


def test_build_prompt_expands_each_marker_to_n_query_copies():
    assert build_prompt("Like <item> for <user>?", 3) == "Like <item><item><item> for <user><user><user>?"
    assert build_prompt(["A ", "<item>", " B"], 2) == "A <item><item> B"


def test_placeholders_tokenize_one_id_per_copy_and_embeddings_grow(lm_tok):
    lm, tok = lm_tok
    rows = lm.get_input_embeddings().num_embeddings
    ids = add_item_tokens(tok, lm)
    assert lm.get_input_embeddings().num_embeddings == len(tok) == rows + 2
    enc = tok(build_prompt("i like <item> and <item> , <user>", 4))["input_ids"]
    assert enc.count(ids["<item>"]) == 8 and enc.count(ids["<user>"]) == 4


def test_spare_embedding_rows_are_not_resized():
    lm, tok = tiny_lm(vocab_size=200)
    add_item_tokens(tok, lm)
    assert lm.get_input_embeddings().num_embeddings == 200


def _prompt(lm, tok, text, Q):
    ids = add_item_tokens(tok, lm)
    return tok(build_prompt(text, Q), return_tensors="pt")["input_ids"], ids["<item>"]


def test_splice_changes_only_placeholder_positions_in_order(lm_tok):
    lm, tok = lm_tok
    Q = 4
    input_ids, item_id = _prompt(lm, tok, "i like <item> and <item> .", Q)
    emb = lm.get_input_embeddings()
    vectors = torch.randn(2, Q, emb.embedding_dim)
    out = splice_embeds(input_ids, emb, vectors, item_id)
    plain = emb(input_ids)
    slots = input_ids == item_id
    assert torch.equal(out[~slots], plain[~slots])
    assert torch.equal(out[slots], vectors.reshape(-1, emb.embedding_dim))


def test_splice_count_mismatch_raises(lm_tok):
    lm, tok = lm_tok
    input_ids, item_id = _prompt(lm, tok, "i like <item> and <item> .", 4)
    emb = lm.get_input_embeddings()
    with pytest.raises(ValueError, match="placeholder count mismatch.*8 placeholders.*3 item"):
        splice_embeds(input_ids, emb, torch.randn(3, 4, emb.embedding_dim), item_id)


def test_splice_casts_to_embedding_dtype_and_keeps_gradients(lm_tok):
    lm, tok = lm_tok
    input_ids, item_id = _prompt(lm, tok, "<item> .", 4)
    plain = lm.get_input_embeddings()(input_ids).to(torch.bfloat16)
    vectors = torch.randn(1, 4, plain.shape[-1], requires_grad=True)
    out = splice_embeds(input_ids, plain, vectors, item_id)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert torch.equal(vectors.grad, torch.ones_like(vectors))


def test_adapter_output_has_the_scale_of_the_lm_embeddings(lm_tok):
    lm, _ = lm_tok
    with torch.no_grad():
        lm.get_input_embeddings().weight.mul_(7.0)  # an LLM whose rows are far from unit scale
    target = embedding_rms(lm.get_input_embeddings())
    adapter = Adapter.for_lm(64, lm)
    x = torch.nn.functional.layer_norm(torch.randn(256, 64), (64,))  # like Q-Former outputs
    rms = adapter(x).pow(2).mean(-1).sqrt().mean().item()
    assert 0.8 * target < rms < 1.25 * target
    fixed = Adapter.for_lm(64, lm, AdapterConfig(fixed_output_rms=True))
    rms_fixed = fixed(5 * x).pow(2).mean(-1).sqrt()
    assert torch.allclose(rms_fixed, torch.full_like(rms_fixed, target), rtol=1e-3)


def test_make_labels_masks_prompt_placeholders_and_padding():
    ids = torch.tensor([[5, 9, 9, 6, 7, 8], [5, 6, 9, 9, 7, 0]])
    attn = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]])
    labels = make_labels(ids, prompt_lens=[1, 2], attention_mask=attn, placeholder_ids=[9])
    assert labels.tolist() == [[-100, -100, -100, 6, 7, 8], [-100, -100, -100, -100, 7, -100]]
    by_mask = make_labels(ids, prompt_mask=ids == 5)
    assert by_mask[:, 0].tolist() == [-100, -100] and by_mask[:, 1:].equal(ids[:, 1:])
