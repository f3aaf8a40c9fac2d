"""The dialog ranker's ILM (``training.ilm_dialog``) end to end on the fixture resources with a tiny
random LLM: trained on the conversational split with the product's CF model, its checkpoint loads
into the ranker hook and the manager, and its check users never include the evaluation's test users."""
import json
from dataclasses import replace

import numpy as np
import pytest

from training.ilm_config import load_config


def test_dialog_config_is_the_small_llm_on_requests():
    cfg = load_config("dialog")
    assert cfg.stage2.llm == "smollm2-135m" and cfg.stage2.quantize == "none"
    assert cfg.stage1.ablations == ("user_item",) and 0 < cfg.stage2.request_prob < 1


@pytest.fixture(scope="module")
def trained(resources, tmp_path_factory, tiny_llm_dir):
    from training.ilm_dialog import run

    tmp = tmp_path_factory.mktemp("ilm_dialog")
    smoke = load_config("smoke")
    cfg = replace(smoke, stage1=replace(smoke.stage1, ablations=("user_item",)),
                  stage2=replace(smoke.stage2, llm=tiny_llm_dir, request_prob=0.5, n_negatives=8),
                  eval=replace(smoke.eval, max_users=4, n_candidates=5))
    report = run(resources, cfg, tmp / "artifacts", tmp / "reports", n_test_users=6, log=lambda *a: None)
    return tmp, cfg, report


def test_ilm_dialog_run_reports_and_checks_outside_the_test_users(trained, resources):
    from dialog.eval.simulator import sample_users
    from training.ilm_dialog import check_users

    tmp, cfg, report = trained
    saved = json.loads((tmp / "reports" / "ilm_dialog_ml-latest-small.json").read_text())
    assert saved["split"] == "last-positive-holdout" == report["split"]
    assert saved["run"]["hardware"]["cpu"] and saved["seed"] == 0 and saved["stage2"]["steps"] == cfg.stage2.steps
    check = saved["check"]
    assert check["n_users"] == 4
    for name in ("sasrec", "ilm_alone", "ilm_alone_with_request"):
        assert 0 <= check[name]["ndcg@10"] <= check[name]["hr@10"] <= 1
    assert "Check:" in (tmp / "reports" / "ilm_dialog_ml-latest-small.md").read_text()
    users = set(check_users(resources.split, 10, 0, n_test_users=6).tolist())
    assert users and not users & set(sample_users(resources.split, 6, 0))


def test_the_checkpoint_feeds_the_ranker(trained, resources):
    from dialog.manager import build_manager
    from dialog.ranker import FEATURES, RankerWeights
    from ilm.score import ILMScorer
    from tests.tiny_models import tiny_lm
    from training.ilm_dialog import checkpoint_dir

    tmp, _, _ = trained
    lm, tok = tiny_lm()
    scorer = ILMScorer.from_checkpoint(checkpoint_dir(tmp / "artifacts", "ml-latest-small"), lm=lm, tokenizer=tok)
    scores = scorer.score_batch([[1, 2, 3]], [[4, 5, 6]], ["I'd like a comedy movie."])[0]
    assert scores.shape == (3,) and np.isfinite(scores).all()
    seen = []
    man = build_manager(resources, weights=RankerWeights.prior(), ilm_scorer=scorer)
    man.tools.recorder = lambda ids, feats: seen.append(feats[:, FEATURES.index("ilm")].copy())
    uid = int(resources.split.user_ids[0])
    man.respond(man.new_state(uid), "a comedy please")
    assert seen and np.ptp(seen[-1]) > 0        # a returning user: the ILM scored the candidates
    with pytest.raises(ValueError, match="not both"):
        build_manager(resources, ilm="x", ilm_scorer=scorer)


def test_ilm_dialog_refuses_another_split(resources, tmp_path):
    from training.ilm_dialog import run

    with pytest.raises(ValueError, match="conversational split"):
        run(replace(resources, split=replace(resources.split, name="leave-one-out")), load_config("smoke"),
            tmp_path, tmp_path, log=lambda *a: None)
