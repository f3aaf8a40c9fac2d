"""The item-token probes' parsing and sampling, the facts task, and the MLP baseline's interface."""
import numpy as np
import pytest
import torch

from ilm.config import QFormerConfig
from ilm.mlp_encoder import MLPItemEncoder
from ilm.tasks import TaskBuilder, decade_of, facts
from training.ilm_probes import parse_facts, probe_items, probes_markdown, update_probes

LABELS = ["Action", "Comedy", "Drama", "Sci-Fi"]


def test_parse_facts_reads_genres_and_the_first_decade():
    assert parse_facts("Genres: Comedy, Sci-Fi. Decade: 1990s.", LABELS) == (["Comedy", "Sci-Fi"], "1990s")
    assert parse_facts("a dramatic action movie from the 2000s", LABELS) == (["Action"], "2000s")
    assert parse_facts("I do not know", LABELS) == ([], None)


def test_facts_task_answers_what_the_probe_parses():
    item = {"title": "Heat", "year": 1995, "genres": ["Action", "Drama"], "description": ""}
    assert facts(item) == "Genres: Action, Drama. Decade: 1990s."
    assert parse_facts(facts(item), LABELS) == (["Action", "Drama"], "1990s")
    rows = [item, {"title": "X", "year": float("nan"), "genres": ["(no genres listed)"], "description": ""}]
    builder = TaskBuilder([np.array([0, 1, 0, 1, 0])], [np.ones(5)], rows, exclude_items=[1])
    ex = builder.sample("facts")
    assert ex.items == [0] and "<item>" in ex.prompt and ex.target == facts(item)


def test_probe_items_need_a_year_and_a_genre():
    rows = [{"year": 1995, "genres": ["Drama"]}, {"year": float("nan"), "genres": ["Drama"]},
            {"year": 2001, "genres": ["(no genres listed)"]}, {"year": 1980, "genres": ["Comedy"]}]
    assert list(probe_items(rows, np.arange(4), 10, 0)) == [0, 3]
    assert decade_of(1987) == "1980s" and decade_of(None) is None


def test_update_probes_keeps_other_sections_and_writes_markdown(tmp_path):
    update_probes(tmp_path, "toy", "user_tokens", {"counting": {"genre_f1": 0.4}})
    update_probes(tmp_path, "toy", "item_tokens", {"qformer": {"genre_f1": 0.7, "decade_acc": 0.5,
                                                               "title10_acc": 0.2}})
    md = (tmp_path / "ilm_probes_toy.md").read_text()
    assert "| counting | 0.4 |" in md and "| qformer | 0.7 | 0.5 | 0.2 |" in md
    assert probes_markdown({"dataset": "toy"}).startswith("# What the ILM's tokens carry")


def test_mlp_encoder_has_the_qformer_interface():
    cfg = QFormerConfig.smoke()
    enc = MLPItemEncoder(cfg)
    assert enc.encode_items(torch.randn(3, cfg.d_cf)).shape == (3, cfg.n_query, cfg.hidden)
    hist = torch.randn(2, 5, cfg.d_cf)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    assert torch.allclose(enc.encode_items(hist, mask)[0], enc.encode_items(hist[:1, :2].mean(1))[0], atol=1e-5)
    assert torch.allclose(enc.item_embed(torch.randn(4, cfg.d_cf)).norm(dim=-1), torch.ones(4))
    assert 0 < float(enc.temperature.detach()) <= 0.5
    with pytest.raises(ValueError, match="at least one"):
        enc.encode_items(hist, torch.zeros(2, 5, dtype=torch.bool))


def test_choice_logprob_matches_scoring_each_full_row(tiny_llm_dir):
    """The shared-prefix scores equal scoring every full row (prompt + choice, collated) on its own."""
    from ilm.config import ILMConfig
    from ilm.features import CFTable
    from ilm.lm import load_llm
    from ilm.model import ItemLanguageModel
    from ilm.rec import ILMRecommender
    from ilm.tasks import DESCRIPTION_PROMPT, Example, collate
    from training.ilm_probes import choice_logprob

    lm, tok = load_llm(tiny_llm_dir, quantize="none")
    torch.manual_seed(0)
    cfg = ILMConfig.smoke(llm=tiny_llm_dir, quantize="none")
    model = ILMRecommender(ItemLanguageModel(cfg, lm, tok), CFTable(torch.randn(5, cfg.qformer.d_cf)))
    model.eval()
    choices = ["Heat", "The Big Lebowski", "Up"]
    shared = choice_logprob(model, Example("description", DESCRIPTION_PROMPT, None, items=[2]), choices)
    with torch.no_grad():
        batch = collate([Example("description", DESCRIPTION_PROMPT, c, items=[2]) for c in choices],
                        tok, cfg.n_query, model.user_encoder)
        logp = model.ilm.lm.get_output_embeddings()(model.hidden(batch)).float().log_softmax(-1)
    rows = []
    for b, c in enumerate(choices):  # the choice's tokens follow the prompt; the appended end-of-text is not scored
        n = len(tok(c, add_special_tokens=False)["input_ids"])
        start = int(batch.last_prompt[b]) + 1
        targets = batch.input_ids[b, start:start + n]
        rows.append(float(logp[b, start - 1:start - 1 + n].gather(1, targets[:, None]).mean()))
    assert np.allclose(shared, rows, atol=1e-4)
