"""Copy the latest benchmark tables from ``reports/*.json`` into README.md between markers, so the
README's numbers always match the committed reports.

    python -m training.report_tables [--readme README.md] [--reports reports]
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from retrieval.eval.report import hardware_line, md_table

START, END = "<!-- offline-table:start -->", "<!-- offline-table:end -->"
SIM_START, SIM_END = "<!-- sim-table:start -->", "<!-- sim-table:end -->"
ILM_START, ILM_END = "<!-- ilm-table:start -->", "<!-- ilm-table:end -->"
SIM_METRICS = ("success@1", "success@3", "success@5", "recall@10", "ndcg@10", "avg_turns")
METRICS = ("hr@10", "ndcg@10", "hr@20", "ndcg@20")


def _run_of(r: dict) -> tuple[str, object]:
    """(hardware line, wall seconds) of a report in the current shape ("run") or an older one."""
    run = r.get("run", {})
    return hardware_line(run.get("hardware", r.get("hardware", ""))), run.get("wall_s", r.get("wall_s", "?"))


def offline_table(reports: Path) -> str:
    lines = []
    for path in sorted(reports.glob("offline_*.json")):
        r = json.loads(path.read_text())
        hw, wall = _run_of(r)
        lines += [f"**{r['dataset']}** ({r['n_users']} users, {r['n_items']} items; seed {r['seed']}; "
                  f"{hw}; wall time {wall} s), test split, models chosen on validation:", ""]
        rare_n = next((m["test_rare"]["n_users"] for m in r["models"].values() if "test_rare" in m), None)

        def paired(m):
            d = m.get("test_minus_sasrec")
            return f"{d['diff']:+.4f} [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}]" if d else "-"

        lines += md_table(["model", *METRICS, "ndcg@10 minus sasrec (paired 95% CI)",
                           f"ndcg@10, test item < {r['config'].get('rare_below', 5)} ratings", "train s"],
                          [[name, *(f"{m['test'][k]:.4f}" for k in METRICS), paired(m),
                            f"{m['test_rare']['ndcg@10']:.4f}" if "test_rare" in m else "-", m["train_s"]]
                           for name, m in r["models"].items()])
        if rare_n is not None:
            lines += ["", f"{rare_n} of {r['n_users']} test users have a test item with fewer than "
                          f"{r['config'].get('rare_below', 5)} training ratings."]
        lines.append("")
    return "\n".join(lines) if lines else "_no offline report yet: run `make bench`_\n"


def sim_table(reports: Path) -> str:
    lines = []
    for path in sorted(reports.glob("sim_*.json")):
        r = json.loads(path.read_text())
        if "systems" not in r:
            continue
        run = r.get("run", {})
        hw, wall = _run_of(r)
        lines += [f"**{r['dataset']}**, {r['simulator']} simulator, {r['n_users']} test users, at most "
                  f"{r['max_turns']} turns, seed {r['seed']} ({hw}; wall time "
                  f"{wall} s); 95% bootstrap interval of success@5 in brackets:", ""]
        rows = []
        for name, m in r["systems"].items():
            lo, hi = m["ci95"]["success@5"]
            cells = [f"{m[k]:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if k == "success@5" else "") for k in SIM_METRICS]
            rows.append([name, m.get("n_users", r["n_users"]), *cells, m["leaks"]])
        lines += md_table(["system", "users", *SIM_METRICS, "leaks"], rows)
        lines.append("")
        lines += [f"- {note}" for note in run.get("notes", [])] + [""] if run.get("notes") else []
    return "\n".join(lines) if lines else "_no simulator report yet: run `make eval`_\n"


def ilm_table(reports: Path) -> str:
    lines = []
    for path in sorted(reports.glob("ilm_*.json")):
        r = json.loads(path.read_text())
        if "models" not in r:
            continue
        m, s1, d, g = r["models"], r["stage1"], r["description"], r["genre_pref"]["methods"]
        steps = ", ".join(f"{k} {v['steps']}" for k, v in r["stage2"].items())
        hw, wall = _run_of(r)
        lines += [f"**{r['dataset']}**, LLM {r['llm']['name']} ({r['llm']['quantize']}), config `{r['config_name']}`, "
                  f"seed {r['seed']}, {m['sasrec']['test']['n_users']} test users ({hw}; "
                  f"wall time {wall} s; stage-2 steps: {steps}):", ""]
        lines += md_table(["next item", "valid NDCG@10", "test NDCG@10", "test HR@10"],
                          [[name, f"{v['valid']['ndcg@10']:.4f}", f"{v['test']['ndcg@10']:.4f}",
                            f"{v['test']['hr@10']:.4f}"] for name, v in m.items()])
        ab = s1["ablations"]
        lines += ["", f"Stage 1, held-out items ({s1['heldout_items']}; chance R@10 {s1['chance_recall@10']}): "
                  + "; ".join(f"{k} item->text R@10 {v['item2text_recall@10']}, text->item R@10 {v['text2item_recall@10']}"
                              for k, v in [("random init", s1["random_init"])] + list(ab.items())) + ".",
                  f"Description cosine: item tokens {d['item_tokens']['cosine_mean']}, title only "
                  f"{d['title_only']['cosine_mean']}. Genre preference F1: "
                  + ", ".join(f"{k} {v['f1']}" for k, v in g.items()) + "."]
        if "item_probes" in r:
            held = r["item_probes"]["sets"]["heldout"]
            lines.append(f"Item tokens alone, {next(iter(held.values()))['n_items']} held-out items (genre F1 / "
                         "decade accuracy / title among 10): "
                         + "; ".join(f"{k} {v['genre_f1']} / {v['decade_acc']} / {v['title10_acc'] or '-'}"
                                     for k, v in held.items()) + ".")
        lines.append("")
    return "\n".join(lines) if lines else "_no ILM report yet: run `make ilm`_\n"


def _replace(text: str, start: str, end: str, body: str, readme: Path) -> str:
    if start not in text or end not in text:
        raise SystemExit(f"{readme} lacks the markers {start} ... {end}")
    block = f"{start}\n{body}\n{end}"
    return re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)


def update_readme(readme: Path, reports: Path) -> None:
    text = _replace(readme.read_text(), START, END, offline_table(reports), readme)
    text = _replace(text, SIM_START, SIM_END, sim_table(reports), readme)
    if ILM_START in text:
        text = _replace(text, ILM_START, ILM_END, ilm_table(reports), readme)
    readme.write_text(text)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m training.report_tables", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--readme", type=Path, default=Path("README.md"))
    p.add_argument("--reports", type=Path, default=Path("reports"))
    a = p.parse_args(argv)
    update_readme(a.readme, a.reports)


if __name__ == "__main__":
    main()
