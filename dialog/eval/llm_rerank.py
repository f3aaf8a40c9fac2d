"""Study: the LLM as a scorer (``dialog.llm_scorer``) on real conversations, alone and as a ranker
feature, against the product's ranker on the same samples and candidates.

    python -m dialog.eval.llm_rerank --llm qwen2.5-coder-1.5b --n-fit 40 --n-dev 100

Per CRS sample (``retrieval.crs_data``: the fit and dev parts, the first by sha256 of their id, as
``dialog.eval.crs --limit`` picks them) the conversation is replayed through the dialog manager as
``dialog.batch`` does and its top ``--top`` suggestions (default 20) with their ranker scores are
kept; the LLM scores those titles in each mode (zero-shot, few-shot). Systems, each ordering the
same ``--top`` candidates:

  full                    the product's order (its top 10 is the CRS benchmark's "full" list)
  llm_<mode>              the LLM's order alone
  full+llm_<mode>         z(ranker score) + w * z(LLM score), z = standardised within the sample;
                          w chosen on the fit samples (grid ``W_GRID``, best mean recall@10 of the
                          fit samples of all data sets together), never on dev; the fit samples
                          are replayed with out-of-fold conversation counts (dialog.eval.out_of_fold)

Metrics on the dev samples, over each sample's labels (the protocol of ``dialog.eval.crs``):
recall@1, recall@10 (95% bootstrap interval), ndcg@10; ``recall@top`` is the ceiling any reordering
can reach. Also the LLM's seconds per sample (both modes, prefix + ``--top`` continuations) on this
machine. Writes ``<out>/crs_llm_scorer.{json,md}``.

Not here: the fine-tuned (LoRA) scorer the issue also names.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from tqdm.auto import tqdm

from dialog.eval.crs import sample_metrics
from dialog.eval.evaluate import bootstrap_ci
from dialog.eval.out_of_fold import OutOfFold
from dialog.llm_scorer import MODES, LLMScorer, LLMScorerConfig
from ilm.runtime.cli import add_runtime_args, runtime_config
from retrieval.cli import add_data_args
from retrieval.crs_data import CRS_DATASETS, TitleMapper, batch_conversation, fixed_subset, load_crs, prepare
from retrieval.eval.report import Run, md_table, run_line, write_report

W_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)


def zscore(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return (x - x.mean()) / x.std() if len(x) > 1 and x.std() > 1e-12 else np.zeros(len(x))


def order(ids: np.ndarray, scores: np.ndarray) -> list[int]:
    """Ids best first; ties keep the product's order."""
    return [int(ids[i]) for i in np.argsort(-np.asarray(scores), kind="stable")]


def collect(manager, scorers: dict, samples, top: int, progress: bool, desc: str,
            oof: OutOfFold | None = None) -> list[dict]:
    """Per sample: the product's top ``top`` (ids, ranker scores), each mode's LLM scores, the labels.
    With ``oof`` (fit samples) each is replayed with the conversation counts of the other folds."""
    from dialog.batch import replay
    rows = []
    order = oof.replayed(manager, samples) if oof is not None else iter(samples)
    for s in tqdm(order, total=len(samples), desc=desc, disable=not progress, leave=False):
        conv = batch_conversation(s.sample)
        sugg = manager.recommend(replay(manager, conv), top)
        ids = np.array([x.item_id for x in sugg], dtype=np.int64)
        row = {"id": s.id, "labels": list(s.labels), "ids": ids,
               "ranker": np.array([x.score for x in sugg], dtype=np.float64), "llm": {}, "llm_s": {}}
        for mode, sc in scorers.items():
            t0 = time.perf_counter()
            row["llm"][mode] = sc.score(conv["turns"], ids)
            row["llm_s"][mode] = time.perf_counter() - t0
        rows.append(row)
    return rows


def lists(rows: list[dict], system: str, w: float = 0.0) -> list[list[int]]:
    out = []
    for r in rows:
        if system == "full":
            out.append([int(i) for i in r["ids"]])
        elif system.startswith("full+"):
            mode = system.split("_", 1)[1]
            out.append(order(r["ids"], zscore(r["ranker"]) + w * zscore(r["llm"][mode])))
        else:
            out.append(order(r["ids"], r["llm"][system.split("_", 1)[1]]))
    return out


def metrics(rows: list[dict], ranked: list[list[int]], top: int) -> dict:
    per = [sample_metrics(lst, r["labels"]) | {f"recall@{top}": len(set(lst) & set(r["labels"])) / len(r["labels"])}
           for r, lst in zip(rows, ranked)]
    keys = ("recall@1", "recall@10", "ndcg@10", f"recall@{top}")
    out = {k: round(float(np.mean([p[k] for p in per])), 4) if per else None for k in keys}
    out["ci95"] = {"recall@10": bootstrap_ci(np.array([p["recall@10"] for p in per]))}
    out["n"] = len(per)
    return out


def choose_w(rows: list[dict], mode: str) -> tuple[float, dict]:
    """The grid weight with the best mean recall@10 on ``rows`` (the fit samples); ties: the smaller w."""
    scores = {w: float(np.mean([sample_metrics(lst, r["labels"])["recall@10"]
                                for r, lst in zip(rows, lists(rows, f"full+llm_{mode}", w))])) for w in W_GRID}
    best = max(W_GRID, key=lambda w: (round(scores[w], 10), -w))
    return best, {str(w): round(v, 4) for w, v in scores.items()}


def markdown(report: dict) -> str:
    top = report["top"]
    lines = ["# The LLM as a scorer on real conversations (CRS dev parts)", "", run_line(report["run"]), "",
             f"LLM: {report['llm']}. Each system orders the same candidates: the product's top {top} "
             f"after the replayed conversation. recall@{top} is the ceiling of any reordering. The weight w of "
             f"full+llm_<mode> = z(ranker) + w z(LLM) was chosen on {report['n_fit']} fit samples "
             f"(recall@10 by w: {report['w_choice']}).", ""]
    for ds, r in report["datasets"].items():
        rows = [[name, m["n"], f"{m['recall@1']:.4f}",
                 f"{m['recall@10']:.4f} [{m['ci95']['recall@10'][0]:.3f}, {m['ci95']['recall@10'][1]:.3f}]",
                 f"{m['ndcg@10']:.4f}", f"{m[f'recall@{top}']:.4f}"] for name, m in r["systems"].items()]
        lines += [f"## {ds} dev ({r['n_dev']} samples)", "",
                  *md_table(["system", "samples", "recall@1", "recall@10 [95% CI]", "ndcg@10", f"recall@{top}"], rows),
                  "", "LLM seconds per sample: " + ", ".join(f"{k} {v}" for k, v in r["llm_s_per_sample"].items()), ""]
    lines += ["How it was run: `dialog/eval/llm_rerank.py`; the prompt and examples: `dialog/llm_scorer.py`."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m dialog.eval.llm_rerank", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(ap, reports=True)
    ap.add_argument("--llm", default="qwen2.5-coder-1.5b", help="the scoring LLM")
    add_runtime_args(ap)
    ap.add_argument("--crs", default=",".join(CRS_DATASETS), help="CRS data sets, comma-separated")
    ap.add_argument("--n-fit", type=int, default=40, help="fit samples per data set (choose w)")
    ap.add_argument("--n-dev", type=int, default=100, help="dev samples per data set (reported)")
    ap.add_argument("--top", type=int, default=20, help="the product's top candidates the LLM scores")
    ap.add_argument("--modes", default=",".join(MODES), help=f"scorer modes, from {MODES}")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    datasets = [d for d in a.crs.split(",") if d]
    modes = [m for m in a.modes.split(",") if m]
    if any(d not in CRS_DATASETS for d in datasets) or any(m not in MODES for m in modes) or not modes:
        ap.error(f"--crs from {CRS_DATASETS}, --modes from {MODES}")
    if a.top < 10 or a.n_fit < 1 or a.n_dev < 1:
        ap.error("--top must be at least 10, --n-fit and --n-dev at least 1")
    from dialog.manager import build_manager
    from ilm.runtime import load_runtime
    from retrieval.resources import load_resources

    run = Run.for_module("dialog.eval.llm_rerank", argv)
    res = load_resources(a.dataset, a.artifacts, a.data_dir)
    manager = build_manager(res)
    runtime = load_runtime(a.llm, runtime_config(a))
    scorers = {m: LLMScorer(runtime, res.catalog, LLMScorerConfig(mode=m)) for m in modes}
    mapper = TitleMapper(res.catalog, res.popularity)
    progress = not a.no_progress
    fit_rows, dev_rows = [], {}
    oof = OutOfFold.from_fit_parts(res, a.data_dir)     # fit samples must not find themselves in the counts
    for ds in datasets:
        fit = fixed_subset(prepare(load_crs(ds, "fit", a.data_dir), mapper)[0], a.n_fit)
        dev = fixed_subset(prepare(load_crs(ds, "dev", a.data_dir), mapper)[0], a.n_dev)
        fit_rows += collect(manager, scorers, fit, a.top, progress, f"{ds} fit", oof)
        dev_rows[ds] = collect(manager, scorers, dev, a.top, progress, f"{ds} dev")
    weights, w_choice = {}, {}
    for m in modes:
        weights[m], w_choice[m] = choose_w(fit_rows, m)
    report = {"llm": f"{a.llm} ({runtime.backend})", "top": a.top, "n_fit": len(fit_rows),
              "weights": weights, "w_choice": w_choice, "datasets": {}}
    for ds, rows in dev_rows.items():
        systems = {"full": metrics(rows, lists(rows, "full"), a.top)}
        for m in modes:
            systems[f"llm_{m}"] = metrics(rows, lists(rows, f"llm_{m}"), a.top)
            systems[f"full+llm_{m}"] = metrics(rows, lists(rows, f"full+llm_{m}", weights[m]), a.top)
        report["datasets"][ds] = {"n_dev": len(rows), "systems": systems,
                                  "llm_s_per_sample": {m: round(float(np.mean([r["llm_s"][m] for r in rows])), 3)
                                                       for m in modes}}
    report["run"] = run.finish(dataset=a.dataset, seed="none needed: fixed sha256 subsets of the samples, deterministic scoring")
    write_report(a.out, "crs_llm_scorer", report, markdown, echo=True)
    return report


if __name__ == "__main__":
    main()
