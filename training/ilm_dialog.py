"""Train the dialog ranker's ILM: the ILM whose score is the ranker's "ilm" feature.

    python -m training.ilm_dialog --dataset ml-latest-small --artifacts artifacts

Differs from the offline ILM run (``training.ilm_run``) in three ways, each for the dialog:
  - the split is the conversational one (``retrieval.splits.last_positive_holdout``, the split the
    dialog evaluation and the ranker fitting use), so no user's held-out target (the simulator's
    hidden movie) is ever trained on; the leave-one-out split of the offline run trains on some of
    them;
  - next-item prompts also carry a request half of the time ("They said: I'd like a comedy
    romance movie from the 1990s.", built from the next movie's genres and decade), as the ranker
    hook appends what the person said;
  - the LLM is the small one (SmolLM2-135M in fp32): the ranker calls the ILM on every turn, and
    with the 1.5B default on 2 CPU cores that pass would eat much of the first-token budget (the
    small one's cost per user: reports/ilm_dialog_ml-latest-small.md; turn latency:
    reports/sim_latency_ml-latest-small_intro.md).
    Only the user-item stage-1 variant is trained (no ablations).

Its CF side is the product's own SASRec and its texts the product's MiniLM embeddings (both from
``make build``, trained / computed on the same split), so the ILM's item tokens come from the very
CF model the ranker's "cf" feature reads. Writes the checkpoint to
``<artifacts>/<dataset>/ilm_dialog/`` (stage 1 beside it, ``ilm_dialog_stage1/``) and
``reports/ilm_dialog_<dataset>.{json,md}``: training
figures and a check on users outside the dialog evaluation's test sample: the held-out target's
rank among SASRec's top candidates by the ILM alone, without and with the request.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from ilm.checkpoint import save_qformer
from ilm.tasks import request_text
from retrieval.eval.report import Run, run_line, write_report
from retrieval.metrics import rank_metrics
from training.ilm_common import Prepared
from training.ilm_config import load_config
from training.ilm_eval import ilm_scores, rerank_ranks, retrieve
from training.ilm_stage1 import run_stage1
from training.ilm_stage2 import build_model, load_frozen_llm, task_builder, train_stage2

N_TEST_USERS = 200    # the dialog evaluation's default test sample (dialog.eval.evaluate --n-users)


def checkpoint_dir(artifacts: str | Path, dataset: str) -> Path:
    return Path(artifacts) / dataset / "ilm_dialog"


def check_users(split, n: int, seed: int, n_test_users: int = N_TEST_USERS) -> np.ndarray:
    """Users with a target, none of them in the dialog evaluation's test sample."""
    from dialog.eval.simulator import sample_users

    test = set(sample_users(split, n_test_users, seed))
    return np.array(sample_users(split, n, seed + 7, exclude=test), dtype=np.int64)


def run(res, cfg, artifacts: Path, out_dir: Path, n_test_users: int = N_TEST_USERS, log=print) -> dict:
    """Train on ``res`` (``retrieval.resources.Resources``: its split, SASRec and text embeddings)."""
    meta = Run(command=f"training.ilm_dialog.run({res.dataset!r}, config {cfg.name!r})")
    torch.manual_seed(cfg.seed)
    dataset = res.dataset
    if res.split.name != "last-positive-holdout":
        raise ValueError(f"the dialog ILM trains on the conversational split, got {res.split.name!r}")
    prep = Prepared(dataset, res.catalog, res.split, res.cf, res.text_embeds, sasrec_train_s=0.0)  # built, not trained here
    ckpt = checkpoint_dir(artifacts, dataset)
    s1_dir = ckpt.parent / "ilm_dialog_stage1"
    qformer, s1_report, s1_data = run_stage1(prep, cfg, s1_dir, log=log)
    save_qformer(s1_dir, qformer, {"dataset": dataset, "split": prep.split.name})

    lm, tok, fingerprint = load_frozen_llm(cfg.stage2.llm, cfg.stage2.quantize)
    model = build_model(prep, cfg, lm, tok, qformer, "qformer")
    builder = task_builder(prep, cfg, exclude_items=s1_data.heldout_items)
    info = train_stage2(model, builder, cfg, prep.catalog.items["title"].tolist(), desc="stage 2 (dialog ILM)", log=log)
    curve = info.pop("curve")
    model.save_pretrained(ckpt, fingerprint, {**info, "split": prep.split.name,
                                              "request_prob": cfg.stage2.request_prob})

    users = check_users(prep.split, cfg.eval.max_users, cfg.seed, n_test_users)
    if not len(users):
        raise ValueError("no users outside the dialog evaluation's test sample to check the ILM on")
    ret = retrieve(prep, users, "test", cfg.eval.n_candidates)
    items = prep.item_rows()
    t = time.perf_counter()
    plain = ilm_scores(model, ret, cfg.stage2.n_recent, cfg.eval.batch_size, desc="check (no request)")
    asked = ilm_scores(model, ret, cfg.stage2.n_recent, cfg.eval.batch_size, desc="check (request)",
                       said=[request_text(items[int(i)]) for i in ret["targets"]])
    per_user_s = (time.perf_counter() - t) / (2 * len(users))

    def metrics(ranks):
        return {k: round(v, 4) for k, v in rank_metrics(ranks, ks=(1, 10)).items() if k in ("ndcg@10", "hr@10", "hr@1")}

    check = {"n_users": int(len(users)), "n_candidates": cfg.eval.n_candidates,
             "in_candidates": round(float(np.mean(ret["ranks"] < cfg.eval.n_candidates)), 4),
             "sasrec": metrics(ret["ranks"]), "ilm_alone": metrics(rerank_ranks(ret, plain, 0.0)),
             "ilm_alone_with_request": metrics(rerank_ranks(ret, asked, 0.0)),
             "score_s_per_user": round(per_user_s, 4)}
    report = {"dataset": dataset, "split": prep.split.name, "seed": cfg.seed, "config_name": cfg.name,
              "llm": {**fingerprint, "quantize": cfg.stage2.quantize}, "checkpoint": str(ckpt),
              "stage1": s1_report, "stage2": info,
              "stage2_loss_first_last": _first_last(curve), "check": check, "config": cfg.to_dict(),
              "run": meta.finish()}
    write_report(out_dir, f"ilm_dialog_{dataset}", report, markdown)
    log(f"wrote {ckpt} and {out_dir}/ilm_dialog_{dataset}.md in {report['run']['wall_s']}s")
    return report


def _first_last(curve: list[dict], n: int = 20) -> dict:
    """Mean next-item and LM losses over the first and last ``n`` steps that had them."""
    out = {}
    for key in ("next_item", "lm"):
        ys = [c[key] for c in curve if key in c]
        if ys:
            out[key] = {"first": round(float(np.mean(ys[:n])), 3), "last": round(float(np.mean(ys[-n:])), 3)}
    return out


def markdown(r: dict) -> str:
    c, s2 = r["check"], r["stage2"]
    ab = r["stage1"]["ablations"]["user_item"]
    lines = [f"# The dialog ranker's ILM: {r['dataset']}", "",
             f"LLM {r['llm']['name']} ({r['llm']['quantize']}), config `{r['config_name']}`, seed {r['seed']}, "
             f"split {r['split']}. {run_line(r['run'])}", "",
             f"Stage 1 (user-item variant): {ab['steps']} steps in {ab['train_s']} s; held-out item->text R@10 "
             f"{ab['item2text_recall@10']} (chance {r['stage1']['chance_recall@10']}).",
             f"Stage 2: {s2['steps']} steps of batch {r['config']['stage2']['batch_size']} in {s2['train_s']} s "
             f"(stopped by {s2['stopped_by']}); losses first -> last 20 steps: "
             + ", ".join(f"{k} {v['first']} -> {v['last']}" for k, v in r["stage2_loss_first_last"].items()) + ".",
             "", f"## Check: {c['n_users']} users outside the dialog evaluation's test sample", "",
             f"The held-out target (the simulator's hidden movie) among SASRec's top {c['n_candidates']} "
             f"({c['in_candidates']:.1%} of targets are in them; the rest count as missed). The request is "
             "built from the target's genres and decade, as in training; the simulator says more than that.", "",
             "| order | NDCG@10 | HR@10 | HR@1 |", "|---|---|---|---|"]
    for name in ("sasrec", "ilm_alone", "ilm_alone_with_request"):
        m = c[name]
        lines.append(f"| {name} | {m['ndcg@10']} | {m['hr@10']} | {m['hr@1']} |")
    lines += ["", f"ILM scoring: {c['score_s_per_user']} s per user (batch {r['config']['eval']['batch_size']}).",
              "What the ranker makes of this score is in `dialog/ranker_weights/<dataset>_ilm.json` "
              "(fitted weight) and `reports/sim_<dataset>.md` (full system with and without it).", ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m training.ilm_dialog", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="ml-latest-small", help="ml-100k, ml-latest-small or ml-1m")
    ap.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="artefact root (`make build`)")
    ap.add_argument("--config", default="dialog", help="an ILM config name or JSON path (default: dialog)")
    ap.add_argument("--llm", default=None, help="override the config's LLM (e.g. qwen2.5-coder-1.5b)")
    ap.add_argument("--out", type=Path, default=Path("reports"))
    ap.add_argument("--data-dir", default=None)
    a = ap.parse_args(argv)
    from retrieval.resources import load_resources

    cfg = load_config(a.config)
    if a.llm:
        from dataclasses import replace
        cfg = replace(cfg, stage2=replace(cfg.stage2, llm=a.llm))
    run(load_resources(a.dataset, a.artifacts, a.data_dir), cfg, a.artifacts, a.out)


if __name__ == "__main__":
    main()
