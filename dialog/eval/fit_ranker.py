"""Fit the conversational ranker's weights on simulated conversations of training users.

    python -m dialog.eval.fit_ranker --dataset ml-latest-small --artifacts artifacts

Users, not items, are split: the evaluation's test users (``sample_users(split, n_test, seed)``,
the same call ``dialog.eval.evaluate`` makes) are removed first; the rest are split into fitting and
validation users. Each round runs the template simulator against the manager with the current
weights, records every rank call's candidate features and, where the target is among the
candidates, the target's row; a conditional logit (``dialog.ranker.fit_weights``) is fitted on
all groups so far (rounds aggregate, so later rounds see the states the fitted ranker leads to).
The round with the best validation success@5 is kept and written to
``dialog/ranker_weights/<dataset>.json`` with how it was fitted.

With ``--ilm CHECKPOINT`` (the dialog ILM, ``training.ilm_dialog``) the ranker also has the ILM's
score as a feature; those weights go to ``<dataset>_ilm.json``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from tqdm.auto import tqdm

from dialog.eval.simulator import TargetFacts, TemplateSimulator, personas, run_conversation, sample_users
from dialog.eval.systems import FullSystem
from dialog.manager import build_manager
from dialog.ranker import FEATURES, RankerWeights, default_weights_path, fit_weights
from retrieval.cli import add_data_args


def simulate(manager, sim, people, calls: list, max_turns, collect: list | None, desc: str, progress: bool) -> float:
    """Run conversations; append (features, target row) groups to ``collect``; return success rate.
    ``calls`` is the list the manager's rank recorder appends (candidate ids, features) to."""
    hits = []
    for p in tqdm(people, desc=desc, disable=not progress, leave=False):
        calls.clear()
        conv = run_conversation(FullSystem(manager), sim, p, max_turns)
        hits.append(conv.success_turn is not None)
        if collect is not None:
            collect.extend((feats, int(np.flatnonzero(ids == p.target)[0]))
                           for ids, feats in calls if p.target in set(ids.tolist()))
    calls.clear()
    return float(np.mean(hits))


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m dialog.eval.fit_ranker", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(ap)
    ap.add_argument("--n-test", type=int, default=200, help="test users held out (as dialog.eval.evaluate samples them)")
    ap.add_argument("--n-fit", type=int, default=240, help="fitting users")
    ap.add_argument("--n-val", type=int, default=80, help="validation users (choose the round)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-turns", type=int, default=5)
    ap.add_argument("--l2", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ilm", default=None, metavar="CHECKPOINT",
                    help="fit with the dialog ILM's score (a training.ilm_dialog checkpoint)")
    ap.add_argument("--weights-out", default=None,
                    help="weights JSON (default dialog/ranker_weights/<dataset>.json, <dataset>_ilm.json with --ilm)")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    from retrieval.resources import load_resources

    t0 = time.perf_counter()
    res = load_resources(a.dataset, a.artifacts, a.data_dir)
    test_users = set(sample_users(res.split, a.n_test, a.seed))
    pool = sample_users(res.split, a.n_fit + a.n_val, a.seed + 1, exclude=test_users)
    rng = np.random.default_rng(a.seed + 2)
    rng.shuffle(pool)
    fit_people = personas(res.split, pool[:a.n_fit])
    val_people = personas(res.split, pool[a.n_fit:])
    assert not ({p.user_index for p in fit_people + val_people} & test_users)
    sim = TemplateSimulator(TargetFacts(res.catalog, res.text_embeds, res.popularity), seed=a.seed)
    scorer = None
    if a.ilm:
        from ilm.score import ILMScorer
        scorer = ILMScorer.from_checkpoint(a.ilm, text_embeds=res.text_embeds)

    weights = RankerWeights.prior()
    groups: list = []
    history = []
    best = None
    progress = not a.no_progress
    for r in range(a.rounds + 1):
        calls: list = []
        manager = build_manager(res, weights=weights, ilm_scorer=scorer,
                                recorder=lambda ids, feats, calls=calls: calls.append((ids, feats.copy())))
        val = simulate(manager, sim, val_people, calls, a.max_turns, None, f"round {r} validation", progress)
        history.append({"round": r, "val_success@5": round(val, 4), "groups": len(groups),
                        "weights": {k: round(v, 4) for k, v in weights.weights.items()}})
        print(f"round {r}: validation success@{a.max_turns} {val:.3f} ({len(groups)} training groups so far)")
        if r > 0 and (best is None or val > best[0]):
            best = (val, weights)
        if r == a.rounds:
            break
        simulate(manager, sim, fit_people, calls, a.max_turns, groups, f"round {r} fitting", progress)
        w, info = fit_weights(groups, l2=a.l2, seed=a.seed)
        print(f"  fitted on {info['groups']} groups: loss {info['loss']:.3f}, train hit@5 {info['train_hit@5']:.3f}")
        weights = RankerWeights({f: float(x) for f, x in zip(FEATURES, w)}, {})
    val, weights = best
    weights.meta = {"fitted": True, "source": f"dialog.eval.fit_ranker on {a.dataset}" + (" with the dialog ILM" if a.ilm else ""),
                    "ilm_checkpoint": a.ilm, "model": "conditional logit, L2",
                    "l2": a.l2, "seed": a.seed, "n_fit_users": len(fit_people), "n_val_users": len(val_people),
                    "test_users_excluded": len(test_users), "val_success@5": round(val, 4),
                    "rounds": history, "wall_s": round(time.perf_counter() - t0, 1),
                    "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    out = a.weights_out or default_weights_path(a.dataset, ilm=bool(a.ilm))
    weights.save(out)
    print(f"kept validation success {val:.3f}; wrote {out}")


if __name__ == "__main__":
    main()
