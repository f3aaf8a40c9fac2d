"""Offline next-item benchmark (DESIGN.md): leave-one-out by time, full ranking over the catalogue
minus the user's seen items, HR/NDCG@{5,10,20}, ties against the model, choices on validation.

Models: pop, bpr, sasrec, text (history text vs item text), hybrid (best CF + text), unisrec
(SASRec over MiniLM item texts through a mixture-of-experts adapter, retrieval/unisrec.py) and
unisrec_id (the same plus an id embedding per item). The CF models use their config defaults, which
were chosen on validation (reports/tuning_cf.md; UniSRec takes SASRec's); the text recency decay and
the hybrid mixing weight are chosen here on validation. Test is computed once, for the chosen
setting, over all test users and over the segment whose test item has fewer than 5 training
interactions (``test_rare``), where id embeddings have the least to learn from. Also times faiss exact search over the catalogue's text embeddings and an
approximate index on synthetic vectors.

Writes ``reports/offline_<dataset>.json`` and ``.md`` and a loss-curve plot; with ``--artifacts``
it saves every model's embeddings (retrieval/embeddings.py format) for the Q-Former.

    python -m training.bench_offline --dataset ml-100k [--config smoke] [--out reports]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from retrieval.bpr import BPR, BPRConfig
from retrieval.catalog import build_catalog
from retrieval.cli import TIMED_DATASETS, add_data_args
from retrieval.data import load_dataset
from retrieval.embeddings import save_embeddings
from retrieval.eval.ann import bench_ann, bench_exact
from retrieval.eval.report import Run, run_line, write_report
from retrieval.metrics import bootstrap_ci, evaluate, ndcg_at, rank_metrics
from retrieval.pop import Popularity
from retrieval.sasrec import SASRec, SASRecConfig
from retrieval.splits import leave_one_out
from retrieval.text_encoder import item_text_embeddings
from retrieval.text_rec import HybridConfig, HybridRecommender, TextRecConfig, TextRecommender
from retrieval.unisrec import UniSRec, UniSRecConfig
from training import config

PROTOCOL = ("leave-one-out by timestamp (last item test, second-last validation); full ranking over "
            "the catalogue minus the user's seen items; ties against the model; all ratings are "
            "implicit interactions")


@dataclass
class BenchConfig:
    seed: int = 0
    bpr: BPRConfig = field(default_factory=BPRConfig)
    sasrec: SASRecConfig = field(default_factory=SASRecConfig)
    unisrec: UniSRecConfig = field(default_factory=UniSRecConfig)
    rare_below: int = 5        # the test_rare segment: test items with fewer training interactions
    text_decays: tuple = (0.5, 0.8, 0.9, 0.97, 1.0)
    hybrid_alphas: tuple = tuple(round(a, 1) for a in np.arange(0.0, 1.01, 0.1))
    ann_n: int = 1_000_000     # synthetic vectors for the approximate-index timing (0 = skip)
    ann_dim: int = 64


def load_config(name: str, seed: int | None = None) -> BenchConfig:
    """``training/configs/offline_<name>.json`` (overrides of the defaults above); ``seed`` sets
    the seed of the run and of every model."""
    cfg = config.load_config("offline", name, BenchConfig())
    if seed is not None:
        cfg = replace(cfg, seed=seed, bpr=replace(cfg.bpr, seed=seed), sasrec=replace(cfg.sasrec, seed=seed),
                      unisrec=replace(cfg.unisrec, seed=seed))
    return cfg


def _round(d: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()}


def _select(name: str, make, grid, split, log) -> tuple:
    """Evaluate ``make(g)`` for each grid value on validation; return (best model, value, results)."""
    results = []
    for g in grid:
        model = make(g)
        v = evaluate(model, split, "valid")
        results.append((v["ndcg@10"], g, model))
        log(f"  {name} {g}: valid ndcg@10 {v['ndcg@10']:.4f}")
    _, best, model = max(results, key=lambda r: r[0])
    return model, best, [{"value": g, "valid_ndcg@10": round(s, 4)} for s, g, _ in results]


def run(dataset: str, cfg: BenchConfig, out_dir: Path, artifacts: Path | None = None,
        data_dir=None, cache_dir: Path | None = None, log=print, meta: Run | None = None) -> dict:
    meta = meta or Run(command=f"training.bench_offline.run({dataset!r})")
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    raw = load_dataset(dataset, data_dir)
    catalog = build_catalog(raw)
    split = leave_one_out(raw, catalog)
    log(f"{dataset}: {split.n_users} users, {split.n_items} items, "
        f"{sum(len(t) for t in split.train)} train interactions")
    models, curves, report_models, choices = {}, {}, {}, {}
    test_users = np.flatnonzero(split.test >= 0)            # the users evaluate() ranks, in its order
    rare = split.popularity()[split.test[test_users]] < cfg.rare_below
    test_ranks = {}

    def record(name, model, fit_info, extra=None):
        v = evaluate(model, split, "valid", progress=True)
        t = evaluate(model, split, "test", progress=True, return_ranks=True)
        test_ranks[name] = t.pop("ranks")
        t_rare = rank_metrics(test_ranks[name][rare]) | {"n_users": int(rare.sum())}
        report_models[name] = {"valid": _round(v), "test": _round(t), "test_rare": _round(t_rare),
                               "train_s": round(fit_info["train_s"], 2)}
        if extra:
            report_models[name].update(extra)
        models[name] = model
        curves[name] = fit_info.get("loss_curve", [])
        log(f"{name}: valid ndcg@10 {v['ndcg@10']:.4f} test ndcg@10 {t['ndcg@10']:.4f} "
            f"hr@10 {t['hr@10']:.4f} (train {fit_info['train_s']:.1f}s)")

    for name, model in (("pop", Popularity()), ("bpr", BPR(cfg.bpr)), ("sasrec", SASRec(cfg.sasrec))):
        record(name, model, model.fit(split.train, split.n_items))

    t = time.perf_counter()
    text_embeds = item_text_embeddings(catalog.items["text"].tolist(),
                                       cache_dir or Path(artifacts or out_dir) / "cache" / dataset)
    encode_s = time.perf_counter() - t
    text, decay, grid = _select("text decay", lambda d: TextRecommender(text_embeds, TextRecConfig(decay=d)),
                                cfg.text_decays, split, log)
    choices["text"] = {"decay": decay, "grid": grid}
    record("text", text, {"train_s": encode_s}, {"config": {"decay": decay}})

    best_cf = max(("bpr", "sasrec"), key=lambda n: report_models[n]["valid"]["ndcg@10"])
    hybrid, alpha, grid = _select(f"hybrid {best_cf}+text alpha",
                                  lambda a: HybridRecommender(models[best_cf], text, HybridConfig(alpha=a)),
                                  cfg.hybrid_alphas, split, log)
    choices["hybrid"] = {"cf": best_cf, "alpha": alpha, "grid": grid}
    record("hybrid", hybrid, {"train_s": 0.0}, {"config": {"cf": best_cf, "alpha": alpha}})

    for name, with_ids in (("unisrec", False), ("unisrec_id", True)):
        model = UniSRec(replace(cfg.unisrec, with_ids=with_ids), text_embeds)
        record(name, model, model.fit(split.train, split.n_items))

    base = ndcg_at(test_ranks["sasrec"])
    for name, ranks in test_ranks.items():       # paired over the same test users
        if name != "sasrec":
            diff = ndcg_at(ranks) - base
            report_models[name]["test_minus_sasrec"] = {"metric": "ndcg@10", "diff": round(float(diff.mean()), 4),
                                                       "ci95": bootstrap_ci(diff, seed=cfg.seed)}

    speed = {"faiss_exact_text": bench_exact(text_embeds, n_queries=min(1000, len(text_embeds)))}
    if cfg.ann_n:
        speed["ann_synthetic"] = bench_ann(n=cfg.ann_n, d=cfg.ann_dim, seed=cfg.seed)
    log(f"speed: {json.dumps(speed)}")

    if artifacts:
        emb_dir = Path(artifacts) / dataset / "embeddings"
        for name in ("pop", "bpr", "sasrec", "text", "unisrec", "unisrec_id"):
            m = models[name]
            histories = [split.history(u, "test") for u in range(split.n_users)]
            config = m.config_dict() if hasattr(m, "config_dict") else asdict(m.config) if hasattr(m, "config") else {}
            save_embeddings(emb_dir, name, m.item_embeddings(), m.user_embeddings(histories),
                            {"model": name, "config": config, "dataset": dataset, "split": split.name,
                             "user_repr": getattr(m, "user_repr", "user vector over the train + validation "
                                                  "history (the test-time history)")})

    report = {
        "dataset": dataset, "protocol": PROTOCOL, "split": split.name, "seed": cfg.seed,
        "n_users": split.n_users, "n_items": split.n_items,
        "description_coverage": round(catalog.description_coverage(), 4),
        "config": {"bpr": asdict(cfg.bpr), "sasrec": asdict(cfg.sasrec), "unisrec": asdict(cfg.unisrec),
                   "rare_below": cfg.rare_below},
        "selection": choices, "models": report_models, "speed": speed, "loss_curves": curves,
        "run": meta.finish(),
    }
    write_report(out_dir, f"offline_{dataset}", report, markdown)
    plot_curves(curves, Path(out_dir) / f"offline_{dataset}_loss.png", dataset)
    return report


METRICS = ("hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20")


def markdown(report: dict) -> str:
    lines = [f"# Offline next-item benchmark: {report['dataset']}", "",
             f"- protocol: {report['protocol']}",
             f"- users: {report['n_users']}, items: {report['n_items']}, seed: {report['seed']}",
             f"- {run_line(report['run'])}", "",
             "Test split (chosen on validation; valid NDCG@10 in the last column; the rare columns are the "
             f"test users whose test item has fewer than {report['config'].get('rare_below', 5)} training "
             "interactions):", "",
             "| model | " + " | ".join(METRICS) + " | minus sasrec, ndcg@10 (paired) | rare ndcg@10 | rare hr@10 "
             "| train s | valid ndcg@10 |",
             "|---" * (len(METRICS) + 6) + "|"]
    for name, m in report["models"].items():
        r = m.get("test_rare")
        rare = f"{r['ndcg@10']:.4f} | {r['hr@10']:.4f}" if r else "- | -"
        d = m.get("test_minus_sasrec")
        paired = f"{d['diff']:+.4f} [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}]" if d else "-"
        lines.append(f"| {name} | " + " | ".join(f"{m['test'][k]:.4f}" for k in METRICS)
                     + f" | {paired} | {rare} | {m['train_s']} | {m['valid']['ndcg@10']:.4f} |")
    n_rare = next((m["test_rare"]["n_users"] for m in report["models"].values() if "test_rare" in m), None)
    if n_rare is not None:
        lines += ["", f"Rare segment: {n_rare} of {report['n_users']} test users."]
    sel = report["selection"]
    lines += ["", f"Choices on validation: text decay {sel['text']['decay']}; hybrid = "
                  f"{sel['hybrid']['cf']} + text with alpha {sel['hybrid']['alpha']}.", ""]
    sp = report["speed"]
    ex = sp["faiss_exact_text"]
    lines.append(f"faiss exact inner-product search over {ex.get('n', report['n_items'])} text vectors: "
                 f"p50 {ex['p50_ms']:.3f} ms, p95 {ex['p95_ms']:.3f} ms per single query.")
    if "ann_synthetic" in sp:
        a = sp["ann_synthetic"]
        lines.append(f"Approximate index ({a['index']}, {a['params']}) on {a['n']:,} synthetic {a['d']}-d "
                     f"vectors ({a['data']}): build {a['build_s']:.1f} s, p50 {a['p50_ms']:.3f} ms per "
                     f"query, recall@{a['k']} vs exact {a['recall_at_%d' % a['k']]:.3f}.")
    return "\n".join(lines) + "\n"


def plot_curves(curves: dict, path: Path, dataset: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    curves = {k: v for k, v in curves.items() if v}
    if not curves:
        return
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.5), squeeze=False)
    for ax, (name, c) in zip(axes[0], curves.items()):
        ax.plot(range(1, len(c) + 1), c)
        ax.set_title(f"{name} training loss ({dataset})")
        ax.set_xlabel("epoch")
        ax.set_ylabel("mean loss")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m training.bench_offline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p, reports=True, datasets=TIMED_DATASETS)
    p.add_argument("--config", default="default", help="training/configs/offline_<name>.json (default, smoke)")
    p.add_argument("--seed", type=int, default=None, help="overrides the config's seed")
    p.add_argument("--save-embeddings", type=Path, default=None, metavar="DIR",
                   help="save every model's embeddings under DIR/<dataset>/embeddings")
    a = p.parse_args(argv)
    torch.set_num_threads(min(torch.get_num_threads(), os.cpu_count() or 1))
    meta = Run.for_module("training.bench_offline", argv)
    report = run(a.dataset, load_config(a.config, a.seed), a.out, a.save_embeddings, a.data_dir, meta=meta)
    print(markdown(report))


if __name__ == "__main__":
    main()
