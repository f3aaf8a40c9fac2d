"""The whole ILM run for one data set: stage 1 (with its ablations), stage 2 (the ILM, the
no-stage-1 ablation and the UEM user encoder), evaluation, and the report.

Writes ``reports/ilm_<dataset>.json`` and ``.md`` and ``reports/ilm_<dataset>_loss.png``; the
trained parts go to ``<work>/<dataset>/`` (``stage1/``, ``stage2_ilm/``, ...), the LLM is never
saved (checkpoints name it and its sha256).

    python -m training.ilm_run --dataset ml-latest-small [--config default] [--llm smollm2-135m]
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ilm.checkpoint import save_qformer
from ilm.lm import use_cpu_packed_4bit
from ilm.mlp_encoder import MLPItemEncoder
from ilm.tasks import NO_GENRE, collate, decade_of
from retrieval.eval.report import Run, run_line, write_report
from retrieval.text_encoder import TextEncoder
from training import ilm_eval, ilm_probes
from training.ilm_common import prepare
from training.ilm_config import ILMRunConfig, load_config
from training.ilm_eval import _weighted_prf
from training.ilm_probes import probe_items, update_probes
from training.ilm_stage1 import run_stage1
from training.ilm_stage2 import build_model, load_frozen_llm, task_builder, train_stage2

PROTOCOL = ("leave-one-out by timestamp (last item test, second-last validation); full ranking over "
            "the catalogue minus the user's seen items; ties against the model; choices on validation")
STAGE2_RUNS = (  # name, item encoder (stage-1 Q-Former, random-init Q-Former, MLP), user encoder
    ("ilm", "stage1", "qformer"),
    ("ilm_rand", "random", "qformer"),
    ("mlp", "mlp", "qformer"),
    ("uem", "stage1", "uem"),
)
PROBE_VARIANTS = {"qformer": "ilm", "random_qformer": "ilm_rand", "mlp_adapter": "mlp"}  # report name: run


def run(dataset: str, cfg: ILMRunConfig, work: Path, out_dir: Path, data_dir=None, log=print,
        encoder=None) -> dict:
    meta = Run(command=f"training.ilm_run.run({dataset!r}, config {cfg.name!r})")
    torch.manual_seed(cfg.seed)
    prep = prepare(dataset, work, cfg.sasrec, data_dir, log=log)
    ds_dir = Path(work) / dataset

    qformer_s1, s1_report, s1_data = run_stage1(prep, cfg, ds_dir, log=log)
    save_qformer(ds_dir / "stage1", qformer_s1, {"dataset": dataset, "stage1": s1_report["ablations"]})
    curves = {"stage1": json.loads((ds_dir / "stage1_curves.json").read_text()), "stage2": {}}

    lm, tok, fingerprint = load_frozen_llm(cfg.stage2.llm, cfg.stage2.quantize)
    titles = prep.catalog.items["title"].tolist()

    models, s2_report = {}, {}
    for i, (name, item_encoder, user_encoder) in enumerate(STAGE2_RUNS):
        if cfg.stage2.lora and i:  # LoRA goes into the LLM itself: each run needs its own copy
            lm, tok, _ = load_frozen_llm(cfg.stage2.llm, cfg.stage2.quantize)
        torch.manual_seed(cfg.seed)
        qformer = {"stage1": lambda: copy.deepcopy(qformer_s1), "random": lambda: None,
                   "mlp": lambda: MLPItemEncoder(replace(cfg.qformer, d_cf=s1_data.table.dim))}[item_encoder]()
        model = build_model(prep, cfg, lm, tok, qformer, user_encoder, table=s1_data.table)
        builder = task_builder(prep, cfg, exclude_items=s1_data.heldout_items)
        info = train_stage2(model, builder, cfg, titles, desc=f"stage 2 ({name})", log=log)
        model.save_pretrained(ds_dir / f"stage2_{name}", fingerprint,
                              {k: v for k, v in info.items() if k != "curve"})
        curves["stage2"][name] = info.pop("curve")
        s2_report[name] = {"from_stage1": item_encoder == "stage1", "item_encoder": item_encoder,
                           "user_encoder": user_encoder,
                           "trainable_params": sum(p.numel() for p in model.trainable()), **info}
        models[name] = model
        log(f"stage 2 {name}: {info['steps']} steps in {info['train_s']}s ({info['stopped_by']})")
    if cfg.stage2.quantize == "nf4" and not torch.cuda.is_available():
        for model in models.values():  # no more backprop: the fast packed kernel is safe again
            use_cpu_packed_4bit(model.ilm.lm, True)

    report_models = ilm_eval.next_item({k: models[k] for k in ("ilm", "ilm_rand", "mlp")}, prep, cfg, log)
    encoder = encoder or TextEncoder()
    rows = prep.item_rows()
    held = [int(i) for i in s1_data.heldout_items if str(rows[int(i)].get("description") or "").strip()]
    held = np.random.default_rng(cfg.seed).permutation(held)[:cfg.eval.n_description]
    desc = ilm_eval.description(models["ilm"], prep, held, encoder, cfg)
    genre = ilm_eval.genre_pref({"qformer_user_tokens": models["ilm"], "uem_soft_prompts": models["uem"]},
                                prep, cfg, log)
    speed = measure_speed(models["ilm"], prep, held[:8], cfg)
    speed["stage1_items_per_s"] = {k: v["items_per_s"] for k, v in s1_report["ablations"].items()}
    speed["stage2_steps_per_s"] = {k: v["steps_per_s"] for k, v in s2_report.items()}
    speed["stage2_batch_size"] = cfg.stage2.batch_size

    probes = item_token_probes(models, prep, s1_data, cfg, log) if cfg.eval.n_probe_items else None
    report = {"dataset": dataset, "protocol": PROTOCOL, "split": prep.split.name, "seed": cfg.seed,
              "config_name": cfg.name,
              "llm": {**fingerprint, "quantize": cfg.stage2.quantize},
              "n_users": prep.split.n_users, "n_items": prep.split.n_items,
              "retriever": "sasrec", "models": report_models, "stage1": s1_report, "stage2": s2_report,
              "description": desc, "genre_pref": genre, "speed": speed, "config": cfg.to_dict(),
              "run": meta.finish()}
    if probes is not None:
        report["item_probes"] = probes
    write_report(out_dir, f"ilm_{dataset}", report, markdown)
    write_probes(out_dir, dataset, report)
    plot_curves(curves, out_dir / f"ilm_{dataset}_loss.png", dataset)
    log(f"wrote {out_dir}/ilm_{dataset}.json, .md and _loss.png in {report['run']['wall_s']}s")
    return report


def item_token_probes(models: dict, prep, s1_data, cfg: ILMRunConfig, log=print) -> dict:
    """``training.ilm_probes`` on held-out items (and on items stage 2 described) for every item
    encoder, the title as text, and the majority answer of the training items."""
    rows = prep.item_rows()
    labels = sorted({g for r in rows for g in r["genres"] if g != NO_GENRE})
    n, seed = cfg.eval.n_probe_items, cfg.seed
    sets = {"heldout": probe_items(rows, s1_data.heldout_items, n, seed),
            "seen": probe_items(rows, s1_data.train_items, n, seed)}
    out = {"protocol": ilm_probes.__doc__.strip(), "genres": labels, "sets": {}}
    train_rows = [rows[int(i)] for i in s1_data.train_items]
    top_g = [g for g, _ in Counter(g for r in train_rows for g in r["genres"] if g != NO_GENRE).most_common(2)]
    top_d = Counter(decade_of(r["year"]) for r in train_rows if r["year"] == r["year"]).most_common(1)[0][0]
    for set_name, items in sets.items():
        res = {}
        for variant, run_name in PROBE_VARIANTS.items():
            res[variant] = ilm_probes.item_probes(models[run_name], rows, items, variant, labels, seed)
        if set_name == "heldout":
            res["title_text"] = ilm_probes.item_probes(models["ilm"], rows, items, "title_text", labels, seed)
        truth = [[g for g in rows[int(i)]["genres"] if g != NO_GENRE] for i in items]
        res["majority"] = {"n_items": int(len(items)), "answer": f"Genres: {', '.join(top_g)}. Decade: {top_d}.",
                           "genre_f1": _weighted_prf(truth, [top_g] * len(items), labels)["f1"],
                           "decade_acc": round(float(np.mean([decade_of(rows[int(i)]["year"]) == top_d
                                                              for i in items])), 4),
                           "title10_acc": None}  # one answer for every item: it cannot pick a title
        out["sets"][set_name] = res
        log(f"item probes ({set_name}): " + "; ".join(
            f"{k} genre F1 {v['genre_f1']}, decade {v['decade_acc']}, title10 {v['title10_acc']}"
            for k, v in res.items()))
    return out


def write_probes(out_dir: Path, dataset: str, report: dict) -> None:
    """The ``item_tokens`` and ``user_tokens`` sections of ``ilm_probes_<dataset>.json``."""
    keys = ("genre_f1", "decade_acc", "title10_acc")
    if "item_probes" in report:
        held = report["item_probes"]["sets"]["heldout"]
        update_probes(out_dir, dataset, "item_tokens",
                      {v: {k: held[v][k] for k in keys} | {"n_items": held[v]["n_items"]} for v in held})
        seen = report["item_probes"]["sets"]["seen"]
        update_probes(out_dir, dataset, "item_tokens_seen",
                      {v: {k: seen[v][k] for k in keys} for v in seen})
    g = report["genre_pref"]["methods"]
    names = {"qformer": "qformer_user_tokens", "uem": "uem_soft_prompts", "counting": "counting",
             **{k: k for k in g if k.startswith("text_")}}
    update_probes(out_dir, dataset, "user_tokens", {k: {"genre_f1": g[v]["f1"]} for k, v in names.items() if v in g})
    update_probes(out_dir, dataset, "run", {"config": report["config_name"], "llm": report["llm"]["name"],
                                            **{k: report["run"][k] for k in ("command", "date", "wall_s", "hardware")}})


@torch.no_grad()
def measure_speed(model, prep, items, cfg: ILMRunConfig) -> dict:
    """Prompt and generation speed of the frozen LLM with item tokens and with the title as text."""
    prompts = ilm_eval.description_prompts(prep.item_rows(), items)
    variants = {"with_item_tokens": prompts["item_tokens"], "text_only": prompts["title_only"]}
    out = {}
    for name, exs in variants.items():
        batch = collate(exs, model.ilm.tokenizer, model.ilm.cfg.n_query, model.user_encoder)
        t = time.perf_counter()
        model.hidden(batch)
        prefill = time.perf_counter() - t
        t = time.perf_counter()
        _, counts = ilm_eval.generate(model, exs, cfg.eval.desc_max_new_tokens)
        wall = time.perf_counter() - t
        out[name] = {"batch": len(exs), "prompt_tokens": counts["prompt_tokens"],
                     "prompt_tokens_per_s": round(counts["prompt_tokens"] / prefill, 1),
                     "generated_tokens": counts["generated_tokens"],
                     "generated_tokens_per_s": round(counts["generated_tokens"] / max(wall - prefill, 1e-9), 2)}
    out["max_rss_gb"] = ilm_eval.max_rss_gb()
    out["note"] = ("batched greedy decoding; generated tokens/s counts every row's tokens, so it is "
                   "the throughput of a batch, not one stream's speed")
    return out


def _f(x) -> str:
    return f"{x:.4f}" if isinstance(x, float) else str(x)


def markdown(r: dict) -> str:
    m = r["models"]
    lines = [f"# Item-Language Model: {r['dataset']}", "",
             f"LLM {r['llm']['name']} ({r['llm']['quantize']}, sha256 {r['llm']['sha256'][:12]}...), config "
             f"`{r['config_name']}`, seed {r['seed']}, split {r['split']}. "
             f"{run_line(r['run'])}", "",
             f"Protocol: {r['protocol']}.", "",
             "## Next item (re-ranking SASRec's top candidates)", "",
             "| model | valid NDCG@10 | test NDCG@10 | test HR@10 | test NDCG@20 | users (test) | alpha (retriever weight) |",
             "|---|---|---|---|---|---|---|"]
    for name, v in m.items():
        alpha = v.get("config", {}).get("alpha_retriever", "")
        lines.append(f"| {name} | {_f(v['valid']['ndcg@10'])} | {_f(v['test']['ndcg@10'])} | {_f(v['test']['hr@10'])} "
                     f"| {_f(v['test']['ndcg@20'])} | {v['test']['n_users']} | {alpha} |")
    s1 = r["stage1"]
    lines += ["", "## Stage 1: item <-> text retrieval on held-out items", "",
              f"{s1['heldout_items']} held-out items (texts never trained on); chance Recall@10 "
              f"{s1['chance_recall@10']}.", "",
              "| Q-Former | losses | item->text R@1 | item->text R@10 | text->item R@1 | text->item R@10 | items/s |",
              "|---|---|---|---|---|---|---|"]
    rows = [("random init", {"losses": []} | s1["random_init"])] + list(s1["ablations"].items())
    for name, a in rows:
        lines.append(f"| {name} | {', '.join(a['losses']) or '-'} | {a['item2text_recall@1']} | {a['item2text_recall@10']} "
                     f"| {a['text2item_recall@1']} | {a['text2item_recall@10']} | {a.get('items_per_s', '')} |")
    lines += ["", "## Stage 2", "", "| run | item encoder | user encoder | steps | examples | s | steps/s | stopped by |",
              "|---|---|---|---|---|---|---|---|"]
    for name, s in r["stage2"].items():
        lines.append(f"| {name} | {s.get('item_encoder', s['from_stage1'])} | {s['user_encoder']} | {s['steps']} | {s['examples']} "
                     f"| {s['train_s']} | {s['steps_per_s']} | {s['stopped_by']} |")
    d = r["description"]
    lines += ["", "## Item description (semantic consistency)", "",
              f"{d['n_items']} held-out items; {d['metric']} between the generated text and the reference "
              f"({d['reference']}).", "", "| input | cosine mean | std |", "|---|---|---|"]
    for name in ("item_tokens", "title_only"):
        lines.append(f"| {name} | {d[name]['cosine_mean']} | {d[name]['cosine_std']} |")
    g = r["genre_pref"]
    lines += ["", "## Genre preference (UEM task)", "", f"{g['n_users']} users; {g['protocol']}; top {g['top']} genres.", "",
              "| method | precision | recall | F1 |", "|---|---|---|---|"]
    for name, v in g["methods"].items():
        lines.append(f"| {name} | {v['precision']} | {v['recall']} | {v['f1']} |")
    if "item_probes" in r:
        lines += ["", "## What the item tokens carry (training/ilm_probes.py)", ""]
        for set_name, res in r["item_probes"]["sets"].items():
            n = next(iter(res.values()))["n_items"]
            lines += [f"{set_name} items ({n}):", "",
                      "| variant | genre weighted F1 | decade accuracy | title among 10 |", "|---|---|---|---|"]
            lines += [f"| {v} | {x['genre_f1']} | {x['decade_acc']} | {'-' if x['title10_acc'] is None else x['title10_acc']} |"
                      for v, x in res.items()]
            lines.append("")
    sp = r["speed"]
    lines += ["", "## Speed", "", "| prompt | prompt tokens/s | generated tokens/s (batch) |", "|---|---|---|"]
    for name in ("with_item_tokens", "text_only"):
        lines.append(f"| {name} | {sp[name]['prompt_tokens_per_s']} | {sp[name]['generated_tokens_per_s']} |")
    lines += ["", f"Max resident memory {sp['max_rss_gb']} GB. Stage 1 items/s: {sp['stage1_items_per_s']}. "
              f"Stage 2 steps/s (batch {sp['stage2_batch_size']}): {sp['stage2_steps_per_s']}. {sp['note']}.", ""]
    return "\n".join(lines)


def plot_curves(curves: dict, path: Path, dataset: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def smooth(xs, w=5):
        xs = np.asarray(xs, dtype=float)
        return np.convolve(xs, np.ones(w) / w, mode="valid") if len(xs) > w else xs

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for name, curve in curves["stage1"].items():
        axes[0].plot(smooth([c["total"] for c in curve]), label=name)
    axes[0].set(title=f"stage 1 total loss ({dataset})", xlabel="step")
    for key, ax in (("lm", axes[1]), ("next_item", axes[2])):
        for name, curve in curves["stage2"].items():
            ys = [c[key] for c in curve if key in c]
            if ys:
                ax.plot(smooth(ys), label=name)
        ax.set(title=f"stage 2 {key} loss", xlabel="step (with that task in the batch)")
    for ax in axes:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="ml-latest-small", help="ml-100k or ml-latest-small")
    ap.add_argument("--config", default="default", help="smoke, default, full or a JSON path")
    ap.add_argument("--llm", default=None, help="override the config's LLM (e.g. smollm2-135m)")
    ap.add_argument("--work", type=Path, default=Path("artifacts/ilm"), help="cache and checkpoints")
    ap.add_argument("--out", type=Path, default=Path("reports"), help="where the report goes")
    ap.add_argument("--data-dir", default=None, help="MovieLens folder (default ../shared/data)")
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    if args.llm:
        cfg = replace(cfg, stage2=replace(cfg.stage2, llm=args.llm))
    run(args.dataset, cfg, args.work, args.out, args.data_dir)


if __name__ == "__main__":
    main()
