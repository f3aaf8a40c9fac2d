"""Scripted evaluation: simulated conversations against each system, with bootstrap CIs.

    python -m dialog.eval.evaluate --dataset ml-latest-small --artifacts artifacts --n-users 200

Per test user (a fixed, seeded sample of users with a held-out target; ``dialog.eval.fit_ranker`` never
uses them), the simulator talks to each system for at most ``--max-turns`` turns. Success at turn
t = the target was in a shown list (top 5) by turn t. Writes ``reports/sim_<dataset>.json``,
``.md`` and ``.png`` (success against turn; ``sim_<simulator>_<dataset>.*`` for the terse and llm tiers). The JSON shape:
  {"dataset", "simulator", "n_users", "max_turns", "seed", "systems": {"<name>": {"success@1", "success@3",
   "success@5", "recall@1", "recall@5", "recall@10", "ndcg@10", "avg_turns", "leaks", "latency_p50_s",
   "latency_p95_s", "n_users", "ci95": {"<metric>": [lo, hi]}}}, "run": {...}, "segments": {...}}
Recall/NDCG are of the last ranked list of the conversation (top 10); average turns counts a
failure as max_turns + 1.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ilm.runtime.cli import add_runtime_args, runtime_config
from retrieval.cli import add_data_args
from retrieval.eval.report import Run, run_line, write_report
from retrieval.metrics import bootstrap_ci

SYSTEMS = ("popularity", "text", "llm_only", "full", "full_ilm")  # full_ilm: full + the dialog ILM (--ilm)
METRICS = ("success@1", "success@3", "success@5", "recall@1", "recall@5", "recall@10", "ndcg@10", "avg_turns")


def conversation_metrics(convs, max_turns: int) -> dict[str, np.ndarray]:
    """Per-user metric arrays from recorded conversations."""
    out = {m: [] for m in METRICS}
    for c in convs:
        st = c.success_turn
        for t in (1, 3, 5):
            out[f"success@{t}"].append(float(st is not None and st <= t))
        rank = c.final_list.index(c.target) if c.target in c.final_list else None
        for k in (1, 5, 10):
            out[f"recall@{k}"].append(float(rank is not None and rank < k))
        out["ndcg@10"].append(0.0 if rank is None or rank >= 10 else 1.0 / np.log2(rank + 2))
        out["avg_turns"].append(float(st if st is not None else max_turns + 1))
    return {k: np.asarray(v) for k, v in out.items()}


def summarise(convs, max_turns: int, seed: int) -> dict:
    m = conversation_metrics(convs, max_turns)
    lat = np.array([x for c in convs for x in c.latencies_s]) if convs else np.zeros(0)
    out = {k: round(float(v.mean()), 4) if len(v) else float("nan") for k, v in m.items()}
    out.update({
        "leaks": int(sum(c.leaks for c in convs)),
        "latency_p50_s": round(float(np.percentile(lat, 50)), 4) if len(lat) else None,
        "latency_p95_s": round(float(np.percentile(lat, 95)), 4) if len(lat) else None,
        "n_users": len(convs),
        "success_by_turn": [round(float(np.mean([c.success_turn is not None and c.success_turn <= t
                                                  for c in convs])), 4) for t in range(1, max_turns + 1)],
        "ci95": {k: bootstrap_ci(v, seed=seed) for k, v in m.items()},
    })
    return out


def segments(convs, facts, res) -> dict:
    """success@5 by target popularity (head = top 10% of items by train count, tail = the rest
    below the median) and by whether the target has a description."""
    pop = np.asarray(res.popularity)
    out = {}
    for c in convs:
        p = pop[c.target]
        seg_pop = "head" if p >= facts.pop_hi else "tail" if p <= facts.pop_lo else "torso"
        seg_desc = "with description" if res.catalog.items.description.iloc[c.target] else "no description"
        for seg in (f"popularity: {seg_pop}", seg_desc):
            out.setdefault(seg, []).append(float(c.success_turn is not None))
    return {k: {"n": len(v), "success@5": round(float(np.mean(v)), 4)} for k, v in sorted(out.items())}


def markdown(report: dict) -> str:
    run = report["run"]
    lines = [f"# Simulated conversations: {report['dataset']}", "",
             f"Simulator: **{report['simulator']}**; {report['n_users']} test users (seed {report['seed']}), "
             f"at most {report['max_turns']} turns, 5 movies shown per turn. Split: {run['split']}.", "",
             run_line(run), "",
             "| system | users | success@1 | success@3 | success@5 (95% CI) | recall@10 | ndcg@10 | avg turns | leaks | latency p50 / p95 (s) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in report["systems"].items():
        ci = s["ci95"]["success@5"]
        lines.append(f"| {name} | {s['n_users']} | {s['success@1']:.3f} | {s['success@3']:.3f} | "
                     f"{s['success@5']:.3f} ({ci[0]:.3f}–{ci[1]:.3f}) | {s['recall@10']:.3f} | {s['ndcg@10']:.3f} | "
                     f"{s['avg_turns']:.2f} | {s['leaks']} | {s['latency_p50_s']} / {s['latency_p95_s']} |")
    if report.get("segments"):
        lines += ["", "## success@5 by segment", "", "| system | segment | users | success@5 |", "|---|---|---|---|"]
        for name, segs in report["segments"].items():
            for seg, v in segs.items():
                lines.append(f"| {name} | {seg} | {v['n']} | {v['success@5']:.3f} |")
    lines += ["", "## How it was run", ""] + [f"- {n}" for n in run.get("notes", [])]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    turns = list(range(1, report["max_turns"] + 1))
    for name, s in report["systems"].items():
        ax.plot(turns, s["success_by_turn"], marker="o", label=f"{name} (n={s['n_users']})")
    ax.set_xlabel("turn")
    ax.set_ylabel("success (target shown by this turn)")
    ax.set_ylim(0, 1)
    ax.set_xticks(turns)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"{report['dataset']}: {report['simulator']} simulator")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m dialog.eval.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p, reports=True)
    p.add_argument("--n-users", type=int, default=200, help="test users (default 200)")
    p.add_argument("--max-turns", type=int, default=5)
    p.add_argument("--seed", type=int, default=0, help="user sample and simulator seed")
    p.add_argument("--systems", default="popularity,text,full",
                   help=f"comma-separated, from {','.join(SYSTEMS)} (llm_only needs --llm)")
    p.add_argument("--simulator", default="template", choices=("template", "terse", "llm"),
                   help="template (default), terse (the template tier without volunteered hints) or llm; "
                        "reports go to sim_<dataset>.* for template, sim_<simulator>_<dataset>.* otherwise")
    p.add_argument("--llm", default=None, help="LLM for llm_only / the LLM simulator / full-system replies "
                                               "(qwen2.5-coder-1.5b, smollm2-135m or a local dir)")
    add_runtime_args(p)
    p.add_argument("--llm-users", type=int, default=None,
                   help="run LLM-generating systems on only the first N of the sampled users")
    p.add_argument("--full-llm-replies", action="store_true",
                   help="the full system writes its replies with the LLM (slow; default: template replies)")
    p.add_argument("--ilm", default=None, metavar="CHECKPOINT",
                   help="the dialog ILM (training.ilm_dialog), for the full_ilm system: the full system "
                        "with the ILM's score in its ranker (weights dialog/ranker_weights/<dataset>_ilm.json)")
    p.add_argument("--weights", default=None, help="ranker weights JSON (default: dialog/ranker_weights/<dataset>.json)")
    p.add_argument("--cache", default=None, help="LLM simulator response cache (default reports/sim_cache_<dataset>.json)")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)

    import sys

    from dialog.eval.simulator import (
        LLMSimulator,
        TargetFacts,
        TemplateSimulator,
        TerseSimulator,
        personas,
        run_conversation,
        sample_users,
    )
    from dialog.eval.systems import (
        FullSystem,
        LLMOnlySystem,
        PopularitySystem,
        TextSystem,
    )
    from dialog.manager import build_manager
    from retrieval.resources import load_resources

    names = [s.strip() for s in a.systems.split(",") if s.strip()]
    bad = [s for s in names if s not in SYSTEMS]
    if bad:
        p.error(f"unknown systems {bad}; choose from {SYSTEMS}")
    if ("llm_only" in names or a.simulator == "llm" or a.full_llm_replies) and not a.llm:
        p.error("llm_only, --simulator llm and --full-llm-replies need --llm")
    if ("full_ilm" in names) != bool(a.ilm):
        p.error("the full_ilm system and --ilm go together")
    run = Run.for_module("dialog.eval.evaluate", argv)
    res = load_resources(a.dataset, a.artifacts, a.data_dir)
    chat = None
    if a.llm:
        from dialog.llm import LocalChatModel
        chat = LocalChatModel.load(a.llm, runtime_config(a))
    facts = TargetFacts(res.catalog, res.text_embeds, res.popularity)
    if a.simulator == "llm":
        sim = LLMSimulator(facts, chat, a.cache or Path(a.out) / f"sim_cache_{a.dataset}.json", seed=a.seed)
    elif a.simulator == "terse":
        sim = TerseSimulator(facts, seed=a.seed)
    else:
        sim = TemplateSimulator(facts, seed=a.seed)
    users = sample_users(res.split, a.n_users, a.seed)
    people = personas(res.split, users)
    man = res.manifest or {}
    notes = [f"Artefacts: {Path(a.artifacts) / a.dataset} (resources config {man.get('config')!r}, built "
             f"{man.get('created')}; CF = SASRec {getattr(res.cf, 'config', None)})."]
    notes += [f"Test users: {len(people)} users with a held-out target, sampled with seed {a.seed} "
             f"(`dialog.eval.simulator.sample_users`); the ranker was fitted on other users only.",
             "Each simulated person is a returning user: every system knows (and never re-suggests) the "
             "history before the target; the full system also uses it for CF.",
             f"Simulator: {sim.name} tier (see dialog/eval/simulator.py for what it reveals, turn by turn)."]
    systems = {}
    for name in names:
        if name == "popularity":
            systems[name] = PopularitySystem(res)
        elif name == "text":
            systems[name] = TextSystem(res)
        elif name == "llm_only":
            systems[name] = LLMOnlySystem(res, chat)
        else:
            ilm = a.ilm if name == "full_ilm" else None
            mgr = build_manager(res, weights=None if ilm else a.weights, ilm=ilm,
                                chat=chat if a.full_llm_replies else None, llm_understanding=False)
            systems[name] = FullSystem(mgr, name=name)
            notes.append(f"{name}: rule-based understanding; "
                         + ("LLM-written replies" if a.full_llm_replies else
                            "template replies (the template simulator reacts to the item list, not the "
                            "wording; LLM reply latency is measured separately)")
                         + f"; ranker weights: {mgr.tools.ranker.weights.meta.get('source', 'shipped file')}.")
    report = {"dataset": a.dataset, "simulator": a.simulator, "n_users": len(people), "max_turns": a.max_turns,
              "seed": a.seed, "systems": {}, "segments": {}}
    for name, system in systems.items():
        group = people
        if name == "llm_only" or (name == "full" and a.full_llm_replies) or a.simulator == "llm":
            if a.llm_users:
                group = people[:a.llm_users]
        convs = []
        bar = tqdm(group, desc=f"{name}", disable=a.no_progress, file=sys.stderr)
        for person in bar:
            convs.append(run_conversation(system, sim, person, a.max_turns))
            bar.set_postfix(success=f"{np.mean([c.success_turn is not None for c in convs]):.2f}")
        report["systems"][name] = summarise(convs, a.max_turns, a.seed)
        report["segments"][name] = segments(convs, facts, res)
        if name == "llm_only":
            notes.append(f"llm_only: {a.llm} ({chat.backend}) on {len(group)} users; it named {system.named} "
                         f"titles, {system.unmatched} of which matched no catalogue movie.")
        if isinstance(sim, LLMSimulator):
            sim.save_cache()
    if isinstance(sim, LLMSimulator):
        notes.append(f"LLM simulator: {a.llm} (backend {chat.backend}); {sim.calls} new generations this run, "
                     f"cache {sim.cache_path}.")
    report["run"] = run.finish(split=f"{res.split.name} (target = each user's last movie rated >= 4)",
                               artifacts=str(Path(a.artifacts) / a.dataset), llm=a.llm, notes=notes)
    stem = f"sim_{a.dataset}" if a.simulator == "template" else f"sim_{a.simulator}_{a.dataset}"
    write_report(a.out, stem, report, markdown, plot, echo=True)
    return report


if __name__ == "__main__":
    main()
