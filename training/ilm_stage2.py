"""Stage 2: train the Q-Former, the adapter and the next-item head (and UEM, or LoRA when asked)
in front of the frozen, quantized LLM, on the four tasks of ``ilm/tasks.py`` at once; the
checkpoint is ``ILMRecommender.save_pretrained``.

accelerate places the trainable modules and the optimizer; ``accelerate launch`` runs the same
script on several GPUs (each process draws its own examples; gradients are averaged).

    python -m training.ilm_stage2 --dataset ml-100k [--config default] [--user-encoder uem]
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ilm.checkpoint import load_qformer
from ilm.features import CFTable
from ilm.lm import llm_fingerprint, load_llm
from ilm.model import ItemLanguageModel
from ilm.qformer import ItemQFormer
from ilm.rec import ILMRecommender
from ilm.tasks import TaskBuilder, collate
from ilm.uem import UEMEncoder
from training.ilm_common import Prepared, prepare
from training.ilm_config import ILMRunConfig, load_config


def load_frozen_llm(spec: str, quantize: str):
    """(lm, tokenizer, fingerprint of its files) of the LLM a config names."""
    lm, tok = load_llm(spec, quantize=quantize)
    return lm, tok, llm_fingerprint(spec)


def build_model(prep: Prepared, cfg: ILMRunConfig, lm, tokenizer, qformer: ItemQFormer | None,
                user_encoder: str = "qformer", table: CFTable | None = None) -> ILMRecommender:
    """The stage-2 model over the CF table stage 1 read (default: SASRec's items); with
    ``stage2.lora`` it adds LoRA adapters to ``lm`` itself, so each such model needs its own
    loaded LLM."""
    table = table or CFTable(prep.sasrec.item_embeddings())
    ilm_cfg = cfg.ilm_config(table.dim)
    ilm = ItemLanguageModel(ilm_cfg, lm, tokenizer, qformer=qformer)
    uem = None
    if user_encoder == "uem":
        d_lm = lm.get_input_embeddings().embedding_dim
        uem = UEMEncoder(replace(cfg.uem, d_text=prep.text_embeds.shape[1]), ilm_cfg.n_query, d_lm,
                         float(ilm.adapter.target_rms))
    return ILMRecommender(ilm, table, user_encoder, uem, prep.text_embeds, cfg.stage2.history_len)


def lr_scale(step: int, elapsed_s: float, warmup: int, steps: int, time_budget_s: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to zero over whichever runs out first: the steps or the time
    budget (a CPU run stopped by its budget would otherwise end at nearly the full rate)."""
    progress = step / max(1, steps)
    if time_budget_s:
        progress = max(progress, elapsed_s / time_budget_s)
    return min(1.0, (step + 1) / max(1, warmup)) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train_stage2(model: ILMRecommender, builder: TaskBuilder, cfg: ILMRunConfig, titles,
                 desc: str = "stage 2", log=print) -> dict:
    """Train in place; returns {"curve", "steps", "steps_per_s", "train_s", "stopped_by"}."""
    from accelerate import Accelerator

    s2 = cfg.stage2
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    model.to_device(accelerator.device)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed + accelerator.process_index)  # each process its own examples
    params = model.trainable()
    opt = torch.optim.AdamW(params, lr=s2.lr, weight_decay=s2.weight_decay)
    start = time.perf_counter()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_scale(
        s, time.perf_counter() - start, s2.warmup, s2.steps, s2.time_budget_s))
    opt, sched = accelerator.prepare(opt, sched)
    tasks = list(s2.task_weights)
    weights = np.array([s2.task_weights[t] for t in tasks], dtype=float)
    weights /= weights.sum()
    candidates = np.unique(np.concatenate(builder.train))
    model.train()
    curve, stopped_by = [], "steps"
    bar = tqdm(range(s2.steps), desc=desc)
    for step in bar:
        examples = [builder.sample(t) for t in rng.choice(tasks, size=s2.batch_size, p=weights)]
        batch = collate(examples, model.ilm.tokenizer, model.ilm.cfg.n_query, model.user_encoder,
                        titles=titles, max_target_tokens=s2.max_target_tokens)
        parts = model.losses(batch, rng.choice(candidates, size=s2.n_negatives))
        loss = sum(parts.values())
        opt.zero_grad()
        accelerator.backward(loss)
        if accelerator.num_processes > 1:  # the trainable parts are small: average their gradients
            for p in params:
                if p.grad is not None:
                    p.grad = accelerator.reduce(p.grad, reduction="mean")
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        curve.append({k: round(v.item(), 4) for k, v in parts.items()} | {"total": round(loss.item(), 4)})
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if s2.log_every and (step + 1) % s2.log_every == 0:
            recent = curve[-s2.log_every:]
            log(f"{desc} step {step + 1}: " + ", ".join(
                f"{k} {np.mean([c[k] for c in recent if k in c]):.3f}" for k in ("lm", "next_item", "total")
                if any(k in c for c in recent)))
        if s2.time_budget_s and time.perf_counter() - start > s2.time_budget_s:
            stopped_by = "time_budget"
            break
    bar.close()
    model.eval()
    train_s = time.perf_counter() - start
    return {"curve": curve, "steps": len(curve), "train_s": round(train_s, 1),
            "steps_per_s": round(len(curve) / max(train_s, 1e-9), 4), "stopped_by": stopped_by,
            "examples": len(curve) * s2.batch_size}


def task_builder(prep: Prepared, cfg: ILMRunConfig, exclude_items=()) -> TaskBuilder:
    return TaskBuilder(prep.split.train, prep.split.train_ratings, prep.item_rows(),
                       n_recent=cfg.stage2.n_recent, exclude_items=exclude_items, seed=cfg.seed,
                       request_prob=cfg.stage2.request_prob)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--config", default="default", help="smoke, default, full or a JSON path")
    ap.add_argument("--work", type=Path, default=Path("artifacts/ilm"))
    ap.add_argument("--user-encoder", default="qformer", choices=("qformer", "uem"))
    ap.add_argument("--stage1", type=Path, default=None,
                    help="a stage-1 checkpoint folder to start the Q-Former from (default: random)")
    ap.add_argument("--llm", default=None, help="override the config's LLM")
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    if args.llm:
        cfg = replace(cfg, stage2=replace(cfg.stage2, llm=args.llm))
    prep = prepare(args.dataset, args.work, cfg.sasrec, args.data_dir)
    lm, tok, fp = load_frozen_llm(cfg.stage2.llm, cfg.stage2.quantize)
    qformer = load_qformer(args.stage1) if args.stage1 else None
    model = build_model(prep, cfg, lm, tok, qformer, args.user_encoder)
    titles = prep.catalog.items["title"].tolist()
    info = train_stage2(model, task_builder(prep, cfg), cfg, titles)
    out = model.save_pretrained(args.work / args.dataset / f"stage2_{args.user_encoder}", fp,
                                {k: v for k, v in info.items() if k != "curve"})
    print(json.dumps({k: v for k, v in info.items() if k != "curve"}, indent=2), "->", out)


if __name__ == "__main__":
    main()
