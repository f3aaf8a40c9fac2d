"""The GPU run, prepared: the ``full`` ILM configuration (default LLM, bigger Q-Former, many more
stage-2 steps) on one GPU within a wall-time budget, writing the reports and the trained
checkpoint to one folder.

    python -m training.ilm_gpu --out $OUT                       # on the GPU machine (about 10 min)
    python -m training.ilm_gpu --out /tmp/gpu --smoke --llm DIR  # the same path on a CPU, tiny

The budget is split before the run starts: stage 1 is capped by its epochs, each of the four
stage-2 runs (ILM, random-init Q-Former, MLP adapter, UEM) gets an equal share of what is left after
a reserve for loading and evaluation. Everything it writes says which device trained it
(``gpu_run.json``), so numbers from this run are told apart from the CPU ones.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import torch

from training.ilm_config import ILMRunConfig, load_config
from training.ilm_run import STAGE2_RUNS, run


def budgeted(cfg: ILMRunConfig, budget_s: float, reserve_s: float) -> ILMRunConfig:
    """``cfg`` with each stage-2 run's time budget set so the runs fit ``budget_s - reserve_s``."""
    if budget_s <= reserve_s:
        raise ValueError(f"the budget ({budget_s} s) must exceed the reserve ({reserve_s} s)")
    per_run = (budget_s - reserve_s) / len(STAGE2_RUNS)
    return replace(cfg, stage2=replace(cfg.stage2, time_budget_s=round(per_run, 1)))


def device_info() -> dict:
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        return {"device": "cuda", "name": p.name, "memory_gb": round(p.total_memory / 2 ** 30, 1),
                "torch": torch.__version__, "cuda": torch.version.cuda}
    return {"device": "cpu", "torch": torch.__version__}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="folder for reports/ and checkpoint/")
    ap.add_argument("--dataset", default="ml-latest-small", help="ml-latest-small (default) or ml-100k")
    ap.add_argument("--config", default=None, help="default: full (smoke with --smoke)")
    ap.add_argument("--budget-s", type=float, default=540.0,
                    help="wall-time budget of the whole run in seconds (default 540)")
    ap.add_argument("--reserve-s", type=float, default=240.0,
                    help="of it, kept for loading, stage 1 and evaluation (default 240)")
    ap.add_argument("--smoke", action="store_true", help="tiny config: the GPU path on a CPU in minutes")
    ap.add_argument("--llm", default=None, help="override the config's LLM (a local folder in tests)")
    ap.add_argument("--work", type=Path, default=None, help="caches (default <out>/work)")
    ap.add_argument("--data-dir", default=None, help="MovieLens folder (default ../shared/data)")
    args = ap.parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this is the GPU run (use --smoke to try its path on a CPU)")
    cfg = load_config(args.config or ("smoke" if args.smoke else "full"))
    if args.llm:
        cfg = replace(cfg, stage2=replace(cfg.stage2, llm=args.llm))
    if not args.smoke:
        cfg = budgeted(cfg, args.budget_s, args.reserve_s)
    start = time.perf_counter()
    out, work = args.out, args.work or args.out / "work"
    report = run(args.dataset, cfg, work, out / "reports", args.data_dir)
    ckpt = work / args.dataset / "stage2_ilm"
    if ckpt.is_dir():
        shutil.copytree(ckpt, out / "checkpoint", dirs_exist_ok=True)
    info = {"dataset": args.dataset, "config": cfg.name, "trained_on": device_info(),
            "stage2_time_budget_s": cfg.stage2.time_budget_s, "wall_s": round(time.perf_counter() - start, 1),
            "stage2_steps": {k: v["steps"] for k, v in report["stage2"].items()}}
    (out / "gpu_run.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))
    return info


if __name__ == "__main__":
    main()
