"""Stage 1: train the Q-Former on items, their texts, co-consumed items and users (no LLM).

Runs the paper's ablations (item-text losses only; + item-item; + user-item) and measures
item-to-text and text-to-item Recall@1/10 among held-out items, whose texts stage 1 never saw.

    python -m training.ilm_stage1 --dataset ml-latest-small --config stage1   # the stage-1 study
    python -m training.ilm_stage1 --dataset ml-100k [--config default] [--work artifacts/ilm]

Writes ``reports/ilm_stage1_<dataset>.{json,md,png}`` (every ablation, ridge, the random-init
Q-Former, by popularity bucket) and the ``stage1`` section of ``reports/ilm_probes_<dataset>.json``.
"""
from __future__ import annotations

import argparse
import copy
import json
import time
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ilm.checkpoint import save_qformer
from ilm.features import CFTable
from ilm.qformer import ItemQFormer, load_text_tokenizer, tokenize_texts
from ilm.stage1_data import Stage1Data
from retrieval.eval.report import Run, md_table, run_line, write_report
from training.cf_inputs import cf_embeddings
from training.ilm_common import Prepared, prepare
from training.ilm_config import ABLATIONS, ILMRunConfig, Stage1Config, load_config
from training.ilm_probes import update_probes
from training.ilm_stage1_eval import heldout_metrics, ridge_probe


def make_tokenize(qcfg):
    if qcfg.text_tokenizer == "hash":  # tests: a tokenizer-free stand-in of the right shape
        def tokenize(texts):
            ids = [[1] + [zlib.crc32(w.encode()) % (qcfg.text_vocab_size - 2) + 2 for w in t.lower().split()][:qcfg.text_max_len - 1]
                   for t in texts]
            T = max(len(r) for r in ids)
            out = torch.zeros(len(ids), T, dtype=torch.long)
            mask = torch.zeros(len(ids), T, dtype=torch.long)
            for b, r in enumerate(ids):
                out[b, :len(r)], mask[b, :len(r)] = torch.tensor(r), 1
            return out, mask
        return tokenize
    tok = load_text_tokenizer(qcfg.text_tokenizer)
    return lambda texts: tokenize_texts(tok, texts, qcfg.text_max_len)


def build_data(prep: Prepared, cfg: ILMRunConfig, work_dir: Path | None = None,
               cf_input: str | None = None) -> Stage1Data:
    """Stage-1 batches over the CF table ``cf_input`` (default: the config's); the frozen text
    side reads the prepared MiniLM embeddings, and a tokenizer is loaded only when a loss reads
    token ids."""
    s1, q = cfg.stage1, cfg.qformer
    frozen = q.text_side == "frozen"
    needs_tokens = not frozen or q.itm or q.itg
    table = CFTable(cf_embeddings(cf_input or s1.cf_input, prep, work_dir, cfg.seed))
    return Stage1Data(prep.split.train, prep.catalog.items["text"].tolist(), table,
                      make_tokenize(q) if needs_tokens else None,
                      holdout_frac=s1.holdout_frac, window=s1.window, history_len=s1.history_len,
                      seed=cfg.seed, text_targets=prep.text_embeds if frozen else None,
                      val_frac=s1.val_frac)


def train_stage1(qformer: ItemQFormer, data: Stage1Data, cfg: Stage1Config, seed: int = 0,
                 desc: str = "stage 1") -> dict:
    """Train in place, epoch by epoch; with validation items, Recall@10 among them is measured
    after every epoch, and with ``cfg.patience`` training stops once it has not improved for that
    many epochs and the best epoch's weights are kept.

    Returns {"curve": per-step losses by part, "val_curve": per epoch {epoch, train_loss,
    val_recall@10}, "best_epoch", "items_per_s", "train_s", "steps"}."""
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(qformer.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = len(data.epoch(cfg.batch_size))
    n_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps:
        n_steps = min(n_steps, cfg.max_steps)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(n_steps, 1),
                                                pct_start=0.1)
    validate = len(data.val_items) >= 2
    curve, val_curve, n_items, train_s = [], [], 0, 0.0
    best = (-1.0, 0, None)  # (val recall, epoch, weights)
    bar = tqdm(total=n_steps, desc=desc)
    for epoch in range(1, cfg.epochs + 1):
        if len(curve) >= n_steps:
            break
        qformer.train()
        t0, first = time.perf_counter(), len(curve)
        for ids in data.epoch(cfg.batch_size):
            if len(curve) >= n_steps:
                break
            out = qformer(data.batch(ids))
            opt.zero_grad()
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(qformer.parameters(), 1.0)
            opt.step()
            sched.step()
            n_items += len(ids)
            curve.append({k: round(v.item(), 4) for k, v in out.parts.items()} | {"total": round(out.loss.item(), 4)})
            bar.update()
            bar.set_postfix(loss=f"{out.loss.item():.3f}")
        train_s += time.perf_counter() - t0
        point = {"epoch": epoch, "train_loss": round(float(np.mean([c["total"] for c in curve[first:]])), 4)}
        if validate:
            point["val_recall@10"] = heldout_eval(qformer, data, data.val_items)["recall@10"]
            if point["val_recall@10"] > best[0]:
                best = (point["val_recall@10"], epoch, copy.deepcopy(qformer.state_dict()))
            elif cfg.patience and epoch - best[1] >= cfg.patience:
                val_curve.append(point)
                break
        val_curve.append(point)
    bar.close()
    if cfg.patience and best[2] is not None:
        qformer.load_state_dict(best[2])
    qformer.eval()
    return {"curve": curve, "val_curve": val_curve,
            "best_epoch": best[1] if cfg.patience and best[2] is not None else len(val_curve),
            "items_per_s": round(n_items / max(train_s, 1e-9), 1),
            "train_s": round(train_s, 1), "steps": len(curve), "epochs_run": len(val_curve)}


@torch.no_grad()
def encode_for_itc(qformer: ItemQFormer, data: Stage1Data, items: np.ndarray,
                   batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """(item features (n, Q, D), text features (n, D)) of ``items`` in the ITC space."""
    qformer.eval()
    item_feats, text_feats = [], []
    for s in range(0, len(items), batch_size):
        ids = items[s:s + batch_size]
        item_feats.append(qformer.item_embeds_for_itc(data.table.items(ids)))
        text_feats.append(qformer.text_side_embeds(data.text_batch(ids)))
    return torch.cat(item_feats), torch.cat(text_feats)


def heldout_eval(qformer: ItemQFormer, data: Stage1Data, items: np.ndarray) -> dict:
    """Item<->text Recall among ``items`` (overall, >= 5 ratings, by bucket): ilm_stage1_eval."""
    return heldout_metrics(*encode_for_itc(qformer, data, items), data.counts, items)


retrieval_recall = heldout_eval  # the name the earlier callers and tests use


def _ridge(data: Stage1Data, prep: Prepared) -> dict:
    return ridge_probe(data.table.embeds.numpy(), prep.text_embeds, data.train_items,
                       data.val_items if len(data.val_items) >= 2 else data.train_items,
                       data.heldout_items, data.counts)


def _train_one(data: Stage1Data, cfg: ILMRunConfig, ablation: str) -> tuple[ItemQFormer, dict, list]:
    qcfg = replace(cfg.qformer, d_cf=data.table.dim, **ABLATIONS[ablation])
    torch.manual_seed(cfg.seed)
    qformer = ItemQFormer(qcfg)
    info = train_stage1(qformer, data, cfg.stage1, cfg.seed, desc=f"stage 1 ({ablation})")
    rec = heldout_eval(qformer, data, data.heldout_items)
    entry = {"losses": [k for k in ("itc", "itm", "itg", "item_item", "user_item") if getattr(qcfg, k)],
             **rec, "items_per_s": info["items_per_s"], "train_s": info["train_s"],
             "steps": info["steps"], "epochs_run": info["epochs_run"], "best_epoch": info["best_epoch"],
             "val_curve": info["val_curve"], "final_loss": info["curve"][-1] if info["curve"] else {}}
    return qformer, entry, info["curve"]


def run_stage1(prep: Prepared, cfg: ILMRunConfig, out_dir: Path, log=print
               ) -> tuple[ItemQFormer, dict, Stage1Data]:
    """Every configured ablation (and CF input to compare); returns the Q-Former of the ablation
    with the best validation Recall@10 (for stage 2), the report and the data (its held-out items
    stay held out in stage 2)."""
    out_dir = Path(out_dir)
    data = build_data(prep, cfg, out_dir)
    log(f"stage 1: {len(data)} training items, {len(data.val_items)} validation, "
        f"{len(data.heldout_items)} held out; CF input {cfg.stage1.cf_input} ({data.table.dim}-d), "
        f"text side {cfg.qformer.text_side}")
    report = {"heldout_items": int(len(data.heldout_items)), "val_items": int(len(data.val_items)),
              "train_items": int(len(data)), "cf_input": cfg.stage1.cf_input,
              "text_side": cfg.qformer.text_side,
              "protocol": "Recall@k of the true text (item->text) or item (text->item) among the "
                          "held-out items (texts never trained on), by ITC similarity (max over "
                          "queries); subsets (>= 5 training ratings, buckets) among their own items; "
                          "ties count against the model; epoch and ridge alpha chosen on separate "
                          "validation items",
              "chance_recall@10": round(min(1.0, 10 / max(len(data.heldout_items), 1)), 4),
              "ridge": _ridge(data, prep), "ablations": {}}
    torch.manual_seed(cfg.seed)
    random = ItemQFormer(replace(cfg.qformer, d_cf=data.table.dim))
    report["random_init"] = heldout_eval(random, data, data.heldout_items)
    log(f"stage 1 ridge ({cfg.stage1.cf_input}): R@10 {report['ridge']['recall@10']}, "
        f">=5 ratings {report['ridge']['recall@10_min5']}")
    qformers, curves = {}, {}
    for name in cfg.stage1.ablations:
        qformers[name], entry, curves[name] = _train_one(data, cfg, name)
        report["ablations"][name] = entry
        log(f"stage 1 {name}: R@10 {entry['recall@10']}, >=5 ratings {entry['recall@10_min5']} "
            f"(epoch {entry['best_epoch']} of {entry['epochs_run']}; {entry['train_s']}s, "
            f"{entry['items_per_s']} items/s)")
    # stage 2 starts from the ablation with the best validation Recall@10 (the last one on a tie
    # or without validation items)
    best = max(reversed(cfg.stage1.ablations),
               key=lambda n: max([p.get("val_recall@10", -1) for p in report["ablations"][n]["val_curve"]] or [-1]))
    report["feeds_stage2"] = best
    qformer = qformers[best]
    log(f"stage 1: {best} feeds stage 2 (best validation Recall@10)")
    cmp = cfg.stage1.compare_ablation
    report["cf_inputs"] = {cfg.stage1.cf_input: {"ridge": report["ridge"],
                                                 "qformer": report["ablations"].get(cmp)}}
    for cf_input in cfg.stage1.compare_cf_inputs:
        if cf_input == cfg.stage1.cf_input:
            continue
        other = build_data(prep, cfg, out_dir, cf_input=cf_input)
        _, entry, _ = _train_one(other, cfg, cmp)
        report["cf_inputs"][cf_input] = {"ridge": _ridge(other, prep), "qformer": entry}
        log(f"stage 1 CF input {cf_input}: ridge R@10 {report['cf_inputs'][cf_input]['ridge']['recall@10']}, "
            f"Q-Former {entry['recall@10']} (>=5: {entry['recall@10_min5']})")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "stage1_curves.json").write_text(json.dumps(curves))
    return qformer, report, data


def probes_section(report: dict) -> dict:
    """The ``stage1`` section of ``reports/ilm_probes_<dataset>.json``: ridge and the Q-Former that
    feeds stage 2 (chosen on validation), overall and on items with >= 5 training ratings."""
    last = report.get("feeds_stage2", list(report["ablations"])[-1])
    pick = lambda r: {"recall@10": r["recall@10"], "recall@10_min5": r["recall@10_min5"]}  # noqa: E731
    by_cf = {name: {"ridge": pick(c["ridge"]), "qformer": pick(c["qformer"]),
                    "qformer_val_recall@10": max(p.get("val_recall@10", -1) for p in c["qformer"]["val_curve"])}
             for name, c in report.get("cf_inputs", {}).items() if c.get("qformer")}
    best_cf = max(by_cf, key=lambda n: by_cf[n]["qformer_val_recall@10"]) if by_cf else None
    return {"ridge": pick(report["ridge"]), "qformer": pick(report["ablations"][last]),
            "by_cf_input": by_cf, "best_cf_input": best_cf,
            "random_qformer": pick(report["random_init"]), "cf_input": report["cf_input"],
            "ablation": last, "heldout_items": report["heldout_items"],
            "chance_recall@10": report["chance_recall@10"],
            "chance_recall@10_min5": report["ridge"]["min5"].get("chance_recall@10")}


def _row(name: str, r: dict, extra: list) -> list:
    b = [r.get(k, {}).get("recall@10", "-") for k in ("lt5", "5to50", "gt50")]
    return [name, r["recall@10"], r["text2item_recall@10"], r["recall@10_min5"], *b, *extra]


def markdown(r: dict) -> str:
    s1, ridge = r["stage1"], r["stage1"]["ridge"]
    n = {k: ridge[k]["n_items"] for k in ("min5", "lt5", "5to50", "gt50")}
    ch = {k: ridge[k].get("chance_recall@10", "-") for k in ("min5", "lt5", "5to50", "gt50")}
    header = ["model", "item->text R@10", "text->item R@10", f"R@10, >=5 ratings (n={n['min5']})",
              f"<5 (n={n['lt5']})", f"5-50 (n={n['5to50']})", f">50 (n={n['gt50']})",
              "epochs (best)", "train s", "items/s"]
    rows = [_row("chance", {"recall@10": s1["chance_recall@10"], "text2item_recall@10": s1["chance_recall@10"],
                            "recall@10_min5": ch["min5"], **{k: {"recall@10": ch[k]} for k in ("lt5", "5to50", "gt50")}},
                 ["", "", ""]),
            _row(f"ridge ({s1['cf_input']}, alpha {ridge['alpha']})", ridge, ["", "", ""]),
            _row("random-init Q-Former", s1["random_init"], ["", "", ""])]
    for name, a in s1["ablations"].items():
        rows.append(_row(f"Q-Former {name} ({' + '.join(a['losses'])})", a,
                         [f"{a['epochs_run']} ({a['best_epoch']})", a["train_s"], a["items_per_s"]]))
    lines = [f"# ILM stage 1 on {r['dataset']}: item<->text retrieval of held-out items", "",
             run_line(r["run"]), "",
             f"{s1['train_items']} training items, {s1['val_items']} validation items (epoch and ridge "
             f"alpha chosen on them), {s1['heldout_items']} held-out items whose texts were never "
             f"trained on. CF input: `{s1['cf_input']}`; text side: `{s1['text_side']}` "
             "(frozen = fixed MiniLM sentence embeddings of the item texts). Popularity = training "
             "ratings. " + s1["protocol"] + ".", "", *md_table(header, rows)]
    if len(s1.get("cf_inputs", {})) > 1:
        lines += ["", "## CF inputs", "", f"Ridge and the Q-Former ({r['config']['stage1']['compare_ablation']}) "
                  "over each CF table (training/cf_inputs.py):", ""]
        rows = []
        for name, c in s1["cf_inputs"].items():
            rows.append(_row(f"ridge on {name}", c["ridge"], ["", "", ""]))
            q = c["qformer"]
            if q is None:
                continue
            rows.append(_row(f"Q-Former on {name}", q, [f"{q['epochs_run']} ({q['best_epoch']})",
                                                       q["train_s"], q["items_per_s"]]))
        lines += md_table(header, rows)
    if "feeds_stage2" in s1:
        lines += ["", f"Stage 2 starts from `{s1['feeds_stage2']}` (the best validation Recall@10)."]
    lines += ["", f"Validation curves: `ilm_stage1_{r['dataset']}.png`. Config: `{r['config_name']}`."]
    return "\n".join(lines)


def plot(r: dict, path: Path) -> None:
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, a in r["stage1"]["ablations"].items():
        pts = [p for p in a["val_curve"] if "val_recall@10" in p]
        ax.plot([p["epoch"] for p in pts], [p["val_recall@10"] for p in pts], label=f"Q-Former {name}")
    for name, c in r["stage1"].get("cf_inputs", {}).items():
        if name == r["stage1"]["cf_input"] or c["qformer"] is None:
            continue
        pts = [p for p in c["qformer"]["val_curve"] if "val_recall@10" in p]
        ax.plot([p["epoch"] for p in pts], [p["val_recall@10"] for p in pts], "--", label=f"Q-Former on {name}")
    ax.axhline(r["stage1"]["ridge"]["val_recall@10"], color="grey", ls=":", label="ridge (validation)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation item->text Recall@10")
    ax.set_title(f"ILM stage 1, {r['dataset']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="ml-100k", help="ml-100k or ml-latest-small (default ml-100k)")
    ap.add_argument("--config", default="default", help="smoke, default, stage1, full or a JSON path")
    ap.add_argument("--work", type=Path, default=Path("artifacts/ilm"), help="cache and checkpoint folder")
    ap.add_argument("--data-dir", default=None, help="MovieLens folder (default ../shared/data)")
    ap.add_argument("--out", type=Path, default=Path("reports"),
                    help="report folder: ilm_stage1_<dataset>.{json,md,png} and the stage1 section "
                         "of ilm_probes_<dataset>.json (default reports)")
    args = ap.parse_args(argv)
    meta = Run.for_module("training.ilm_stage1", argv)
    cfg = load_config(args.config)
    prep = prepare(args.dataset, args.work, cfg.sasrec, args.data_dir)
    qformer, s1, _ = run_stage1(prep, cfg, args.work / args.dataset)
    save_qformer(args.work / args.dataset / "stage1", qformer, {"dataset": args.dataset,
                                                                "cf_input": cfg.stage1.cf_input})
    report = {"dataset": args.dataset, "split": prep.split.name, "seed": cfg.seed,
              "config_name": cfg.name, "stage1": s1, "config": cfg.to_dict(),
              "run": meta.finish(sasrec_train_s=prep.sasrec_train_s)}
    write_report(args.out, f"ilm_stage1_{args.dataset}", report, markdown, plot=plot, echo=True)
    update_probes(args.out, args.dataset, "stage1", probes_section(s1))


if __name__ == "__main__":
    main()
