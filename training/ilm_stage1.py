"""Stage 1: train the Q-Former on items, their texts, co-consumed items and users (no LLM).

Runs the paper's ablations (item-text losses only; + item-item; + user-item) and measures
item-to-text and text-to-item Recall@1/10 among held-out items, whose texts stage 1 never saw.

    python -m training.ilm_stage1 --dataset ml-100k [--config default] [--work artifacts/ilm]
"""
from __future__ import annotations

import argparse
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
from ilm.losses import itc_similarity
from ilm.qformer import ItemQFormer, load_text_tokenizer, tokenize_texts
from ilm.stage1_data import Stage1Data
from training.ilm_common import Prepared, prepare
from training.ilm_config import ABLATIONS, ILMRunConfig, Stage1Config, load_config


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


def build_data(prep: Prepared, cfg: ILMRunConfig) -> Stage1Data:
    s1 = cfg.stage1
    return Stage1Data(prep.split.train, prep.catalog.items["text"].tolist(),
                      CFTable(prep.sasrec.item_embeddings()), make_tokenize(cfg.qformer),
                      holdout_frac=s1.holdout_frac, window=s1.window, history_len=s1.history_len,
                      seed=cfg.seed)


def train_stage1(qformer: ItemQFormer, data: Stage1Data, cfg: Stage1Config, seed: int = 0,
                 desc: str = "stage 1") -> dict:
    """Train in place; returns {"curve": [per-step losses by part], "items_per_s", "train_s"}."""
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(qformer.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n_steps = cfg.epochs * len(data.epoch(cfg.batch_size))
    if cfg.max_steps:
        n_steps = min(n_steps, cfg.max_steps)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(n_steps, 1),
                                                pct_start=0.1)
    qformer.train()
    curve, n_items, start = [], 0, time.perf_counter()
    bar = tqdm(total=n_steps, desc=desc)
    for _ in range(cfg.epochs):
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
    bar.close()
    qformer.eval()
    train_s = time.perf_counter() - start
    return {"curve": curve, "items_per_s": round(n_items / max(train_s, 1e-9), 1),
            "train_s": round(train_s, 1), "steps": len(curve)}


@torch.no_grad()
def retrieval_recall(qformer: ItemQFormer, data: Stage1Data, items: np.ndarray,
                     ks=(1, 10), batch_size: int = 256) -> dict:
    """Item->text and text->item Recall@k among ``items`` (each item's own text is the match)."""
    qformer.eval()
    item_feats, text_feats = [], []
    for s in range(0, len(items), batch_size):
        ids = items[s:s + batch_size]
        item_feats.append(qformer.item_embeds_for_itc(data.table.items(ids)))
        text_ids, text_mask = data.tokenize([data.texts[i] for i in ids])
        text_feats.append(qformer.text_embeds_for_itc(text_ids, text_mask))
    sim = itc_similarity(torch.cat(item_feats), torch.cat(text_feats))  # (n, n)
    out = {"n_items": int(len(items))}
    for name, s in (("item2text", sim), ("text2item", sim.t())):
        rank = (s > s.diag()[:, None]).sum(dim=1)  # how many beat the true match
        for k in ks:
            out[f"{name}_recall@{k}"] = round(float((rank < k).float().mean()), 4)
    return out


def run_stage1(prep: Prepared, cfg: ILMRunConfig, out_dir: Path, log=print
               ) -> tuple[ItemQFormer, dict, Stage1Data]:
    """Every configured ablation; returns the last one's Q-Former (for stage 2), the report and
    the data (its held-out items stay held out in stage 2)."""
    data = build_data(prep, cfg)
    log(f"stage 1: {len(data)} training items, {len(data.heldout_items)} held out")
    report = {"heldout_items": int(len(data.heldout_items)), "train_items": int(len(data)),
              "protocol": "Recall@k of the true text (item->text) or item (text->item) among the "
                          "held-out items, by ITC similarity (max over queries)",
              "chance_recall@10": round(min(1.0, 10 / max(len(data.heldout_items), 1)), 4),
              "ablations": {}}
    torch.manual_seed(cfg.seed)
    random = ItemQFormer(replace(cfg.qformer, d_cf=data.table.dim))
    report["random_init"] = retrieval_recall(random, data, data.heldout_items)
    qformer, curves = None, {}
    for name in cfg.stage1.ablations:
        qcfg = replace(cfg.qformer, d_cf=data.table.dim, **ABLATIONS[name])
        torch.manual_seed(cfg.seed)
        qformer = ItemQFormer(qcfg)
        info = train_stage1(qformer, data, cfg.stage1, cfg.seed, desc=f"stage 1 ({name})")
        rec = retrieval_recall(qformer, data, data.heldout_items)
        report["ablations"][name] = {"losses": [k for k in ("itc", "itm", "itg", "item_item", "user_item")
                                                 if getattr(qcfg, k)],
                                     **rec, "items_per_s": info["items_per_s"],
                                     "train_s": info["train_s"], "steps": info["steps"],
                                     "final_loss": info["curve"][-1] if info["curve"] else {}}
        curves[name] = info["curve"]
        log(f"stage 1 {name}: {json.dumps(rec)} ({info['train_s']}s, {info['items_per_s']} items/s)")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "stage1_curves.json").write_text(json.dumps(curves))
    return qformer, report, data


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="ml-100k", help="ml-100k or ml-latest-small (default ml-100k)")
    ap.add_argument("--config", default="default", help="smoke, default, full or a JSON path")
    ap.add_argument("--work", type=Path, default=Path("artifacts/ilm"), help="cache and checkpoint folder")
    ap.add_argument("--data-dir", default=None, help="MovieLens folder (default ../shared/data)")
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    prep = prepare(args.dataset, args.work, cfg.sasrec, args.data_dir)
    qformer, report, _ = run_stage1(prep, cfg, args.work / args.dataset)
    save_qformer(args.work / args.dataset / "stage1", qformer, {"dataset": args.dataset})
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
