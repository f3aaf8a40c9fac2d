"""Fit the conversational ranker's weights on simulated conversations of training users and on
real conversations (the CRS data's fit parts).

    python -m dialog.eval.fit_ranker --dataset ml-latest-small --artifacts artifacts

Users, not items, are split: the evaluation's test users (``sample_users(split, n_test, seed)``,
the same call ``dialog.eval.evaluate`` makes) are removed first; the rest are split into fitting and
validation users. Each round runs the template and the terse simulators against the manager with the current
weights, records every rank call's candidate features and, where the target is among the
candidates, the target's row; a conditional logit (``dialog.ranker.fit_weights``) is fitted on
all groups so far (rounds aggregate, so later rounds see the states the fitted ranker leads to).
The round chosen (below) is written to
``dialog/ranker_weights/<dataset>.json`` with how it was fitted.

Real conversations (``--crs``, default on when ``<data-dir>/crs`` exists): every sample of the
fit parts (ReDial fit, OpenDialKG train) is replayed as ``dialog.batch`` does, with the built
conversation counts (which contain the sample's own recommendations) or, with ``--crs-folds K``, with
the counts of the other K folds of fit dialogs (``dialog.eval.out_of_fold``). Which replay fits the
better ranker was chosen on the whole dev parts (2026-12-04, ``reports/crs_*.md``, system
``full_oof5``; paired over the same samples): out of fold (5 folds) against the built counts,
recall@10 ReDial 0.135 vs 0.132 (difference +0.003 [-0.012, +0.017]), OpenDialKG 0.129 vs 0.154
(-0.025 [-0.039, -0.011]). Out-of-fold replays find
fewer of the labels through the counts than dev conversations do (a label among the "recommended
after" movies of the context: OpenDialKG 1.7% of fit samples out of fold, 3.9% of dev samples;
ReDial 9.4% vs 11.6%), while the built counts find every label of a sample whose context names a
movie, so the truth lies between and the dev
parts prefer the built counts; the default is therefore 0. The last rank call's
candidates give one group per recommended movie found among them (features do not depend on the
weights, so they are collected once). Every round's weights are fitted on the simulated groups so
far plus these. The dev parts choose: each round is scored on validation users (success@5, the mean of the two simulators) and on
``--crs-dev`` dev samples per CRS data set (recall@10, the first samples by sha256 of their id, as
``dialog.eval.crs --limit`` picks them); the round with the best sum is kept.

With ``--ilm CHECKPOINT`` (the dialog ILM, ``training.ilm_dialog``) the ranker also has the ILM's
score as a feature; those weights go to ``<dataset>_ilm.json``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from tqdm.auto import tqdm

from dialog.eval.out_of_fold import DEFAULT_FOLDS, OutOfFold
from dialog.eval.simulator import (
    TargetFacts,
    TemplateSimulator,
    TerseSimulator,
    personas,
    run_conversation,
    sample_users,
)
from dialog.eval.systems import FullSystem
from dialog.manager import build_manager
from dialog.ranker import FEATURES, RankerWeights, default_weights_path, fit_weights
from retrieval.cli import add_data_args
from retrieval.crs_data import fixed_subset


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


def crs_groups(manager, calls: list, samples, progress: bool, oof: OutOfFold | None = None) -> tuple[list, int]:
    """(features, label row) groups from replayed real conversations, and how many samples had a
    label among the candidates. With ``oof`` each sample is replayed with the conversation counts
    of the other folds (``dialog.eval.out_of_fold``)."""
    from dialog.batch import recommend_conversation
    from retrieval.crs_data import batch_conversation
    groups, n_hit = [], 0
    order = oof.replayed(manager, samples) if oof is not None else iter(samples)
    for s in tqdm(order, total=len(samples), desc="real conversations (fit)", disable=not progress, leave=False):
        calls.clear()
        recommend_conversation(manager, batch_conversation(s.sample), 10)
        ids, feats = calls[-1]
        pos = {int(i): r for r, i in enumerate(ids)}
        rows = [pos[i] for i in s.labels if i in pos]
        n_hit += bool(rows)
        groups.extend((feats, r) for r in rows)
    calls.clear()
    return groups, n_hit


def crs_recall(manager, samples) -> float:
    """Mean recall@10 of the product on CRS samples, as ``dialog.eval.crs`` scores its "full" system."""
    from dialog.eval.crs import rank_full, sample_metrics
    lists, _ = rank_full(manager, samples, 10, progress=False)
    return float(np.mean([sample_metrics(lists.get(s.id, []), s.labels)["recall@10"] for s in samples])) \
        if samples else 0.0


def load_crs_parts(res, data_dir, n_dev: int):
    """The prepared fit samples of every CRS data set and ``n_dev`` dev samples of each (None when
    the CRS data is missing)."""
    from retrieval.crs_data import CRS_DATASETS, TitleMapper, crs_dir, load_crs, prepare
    if not crs_dir(data_dir).is_dir():
        return None
    mapper = TitleMapper(res.catalog, res.popularity)
    fit, dev = [], {}
    for ds in CRS_DATASETS:
        fit += prepare(load_crs(ds, "fit", data_dir), mapper)[0]
        d = prepare(load_crs(ds, "dev", data_dir), mapper)[0]
        dev[ds] = fixed_subset(d, n_dev)
    return fit, dev


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m dialog.eval.fit_ranker", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(ap)
    ap.add_argument("--n-test", type=int, default=200, help="test users held out (as dialog.eval.evaluate samples them)")
    ap.add_argument("--n-fit", type=int, default=120, help="fitting users")
    ap.add_argument("--n-val", type=int, default=60, help="validation users (choose the round)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--max-turns", type=int, default=5)
    ap.add_argument("--l2", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ilm", default=None, metavar="CHECKPOINT",
                    help="fit with the dialog ILM's score (a training.ilm_dialog checkpoint)")
    ap.add_argument("--weights-out", default=None,
                    help="weights JSON (default dialog/ranker_weights/<dataset>.json, <dataset>_ilm.json with --ilm)")
    ap.add_argument("--no-crs", action="store_true", help="only simulated conversations (no real ones)")
    ap.add_argument("--crs-fit", type=int, default=1500,
                    help="at most this many fit samples, the first by sha256 of their id (default 1500 of "
                         "3,283: about 5 minutes on 2 cores); 0 = all")
    ap.add_argument("--crs-folds", type=int, default=0,
                    help="0 (default, chosen on the dev parts: see above) = replay fit samples with the built "
                         "conversation counts, which contain each sample's own labels; K >= 2 = with the counts "
                         f"of the other K folds of fit dialogs (dialog.eval.out_of_fold; {DEFAULT_FOLDS} was tried)")
    ap.add_argument("--crs-dev", type=int, default=150, help="dev samples per CRS data set that choose the round")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    if a.crs_folds == 1 or a.crs_folds < 0:
        ap.error("--crs-folds must be 0 (no folds) or at least 2")
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
    facts = TargetFacts(res.catalog, res.text_embeds, res.popularity)
    sims = {"template": TemplateSimulator(facts, seed=a.seed), "terse": TerseSimulator(facts, seed=a.seed)}
    scorer = None
    if a.ilm:
        from ilm.score import ILMScorer
        scorer = ILMScorer.from_checkpoint(a.ilm, text_embeds=res.text_embeds)

    weights = RankerWeights.prior()
    groups: list = []
    history = []
    best = None
    progress = not a.no_progress
    crs = None if a.no_crs else load_crs_parts(res, a.data_dir, a.crs_dev)
    real: list = []
    crs_info = {}
    if crs is not None:
        calls: list = []
        manager = build_manager(res, weights=weights, recorder=lambda ids, feats, calls=calls: calls.append((ids, feats.copy())))
        fit_samples = fixed_subset(crs[0], a.crs_fit)
        oof = OutOfFold.from_fit_parts(res, a.data_dir, a.crs_folds) if a.crs_folds else None
        real, n_hit = crs_groups(manager, calls, fit_samples, progress, oof)
        crs_info = {"fit_samples": len(fit_samples), "fit_samples_with_a_label_among_candidates": n_hit,
                    "conversation_counts": f"out of fold ({a.crs_folds} folds of fit dialogs)" if oof
                    else "as built (each fit sample's own labels included)",
                    "fit_groups": len(real), "dev_samples_per_set": {ds: len(v) for ds, v in crs[1].items()}}
        print(f"real conversations: {len(fit_samples)} fit samples, {n_hit} with a recommended movie among the "
              f"candidates -> {len(real)} groups")
    for r in range(a.rounds + 1):
        calls = []
        manager = build_manager(res, weights=weights, ilm_scorer=scorer,
                                recorder=lambda ids, feats, calls=calls: calls.append((ids, feats.copy())))
        vals = {name: round(simulate(manager, sim, val_people, calls, a.max_turns, None,
                                     f"round {r} validation ({name})", progress), 4) for name, sim in sims.items()}
        val = float(np.mean(list(vals.values())))
        dev = {ds: round(crs_recall(manager, v), 4) for ds, v in crs[1].items()} if crs is not None else {}
        choose = val + sum(dev.values())
        history.append({"round": r, "val_success@5": vals, "dev_recall@10": dev, "groups": len(groups),
                        "weights": {k: round(v, 4) for k, v in weights.weights.items()}})
        print(f"round {r}: validation success@{a.max_turns} {vals}, CRS dev recall@10 {dev} "
              f"({len(groups)} simulated + {len(real)} real training groups)")
        if r > 0 and (best is None or choose > best[0]):
            best = (choose, vals, dev, weights)
        if r == a.rounds:
            break
        for name, sim in sims.items():
            simulate(manager, sim, fit_people, calls, a.max_turns, groups, f"round {r} fitting ({name})", progress)
        w, info = fit_weights(groups + real, l2=a.l2, seed=a.seed)
        print(f"  fitted on {info['groups']} groups: loss {info['loss']:.3f}, train hit@5 {info['train_hit@5']:.3f}")
        weights = RankerWeights({f: float(x) for f, x in zip(FEATURES, w)}, {})
    _, val, dev, weights = best
    weights.meta = {"fitted": True, "source": f"dialog.eval.fit_ranker on {a.dataset}" + (" with the dialog ILM" if a.ilm else ""),
                    "ilm_checkpoint": a.ilm, "model": "conditional logit, L2",
                    "l2": a.l2, "seed": a.seed, "n_fit_users": len(fit_people), "n_val_users": len(val_people),
                    "test_users_excluded": len(test_users), "val_success@5": val,
                    "real_conversations": crs_info, "dev_recall@10": dev,
                    "chosen_by": "mean validation success@5 (template, terse) + the CRS dev recall@10s",
                    "simulators": list(sims),
                    "rounds": history, "wall_s": round(time.perf_counter() - t0, 1),
                    "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    out = a.weights_out or default_weights_path(a.dataset, ilm=bool(a.ilm))
    weights.save(out)
    print(f"kept validation success {val}, CRS dev recall@10 {dev}; wrote {out}")


if __name__ == "__main__":
    main()
