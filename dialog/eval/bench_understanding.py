"""Benchmark: how well each understanding path reads single messages, against hand-labelled gold.

    python -m dialog.eval.bench_understanding --dataset ml-latest-small --llm qwen2.5-coder-1.5b

The gold set (``dialog/eval/bench_data/understanding.jsonl``, 40 messages written for this benchmark;
no MovieLens data) gives, per message, the genres to include / exclude, the year range, the movies
liked / disliked / seen (by title, or by position among the last suggestions shown), whether an
explanation is asked for and whether the audience is children. Each path's ``Understanding`` is
reduced to the same fields, with titles and positions resolved to catalogue items, and compared
field by field (years within one year: "after 2010" may mean 2010 or 2011). Fields the gold leaves
out must come back empty, so invented constraints count as errors.

Paths: ``rules`` (``parse_message``, the default) and ``llm`` (``LLMUnderstander``: JSON, schema
check, one repair, the rules as fallback). Writes ``reports/understanding_<dataset>.{json,md}``, the
JSON with each message's log (what the LLM said, accepted / repaired / fell back).

``bench_data/understanding_dev.jsonl`` holds 14 other messages, labelled the same way, for working on
the extraction prompt (``--gold dialog/eval/bench_data/understanding_dev.jsonl --out /tmp/dev``); the 40
are kept for the reported numbers, so the prompt is not tuned on them.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from dialog.understand import LLMUnderstander, Understanding, parse_message
from ilm.runtime.cli import add_runtime_args, runtime_config
from retrieval.cli import add_data_args
from retrieval.eval.report import Run, run_line, write_report

GOLD = Path(__file__).resolve().parent / "bench_data" / "understanding.jsonl"
FIELDS = ("include", "exclude", "years", "liked", "disliked", "seen", "explain", "kids")
KID_WORDS = ("kid", "child", "family", "son", "daughter", "toddler", "little")


def load_gold(path: str | Path = GOLD) -> list[dict]:
    cases = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    for i, c in enumerate(cases):
        if not isinstance(c.get("text"), str):
            raise ValueError(f"{path}: case {i + 1} has no text")
    return cases


def _item(finder, title: str) -> int | None:
    m = finder.resolve(title)
    return m.item_id if m.item_id is not None else (m.candidates[0] if m.candidates else None)


def gold_fields(case: dict, finder) -> dict:
    """The gold labels as comparable values; titles resolved through the same finder."""
    last = [_item(finder, t) for t in case.get("last", [])]

    def items(titles_key, refs_key):
        out = {_item(finder, t) for t in case.get(titles_key, [])}
        out |= {last[p - 1] for p in case.get(refs_key, [])}
        return out

    unresolved = [t for k in ("liked", "disliked", "seen") for t in case.get(k, []) + case.get("last", [])
                  if _item(finder, t) is None]
    if unresolved:
        raise ValueError(f"gold titles not in the catalogue: {unresolved}")
    return {"include": set(case.get("include", [])), "exclude": set(case.get("exclude", [])),
            "years": (case.get("year_min"), case.get("year_max")),
            "liked": items("liked", "like_refs"), "disliked": items("disliked", "dislike_refs"),
            "seen": items("seen", "seen_refs"), "explain": bool(case.get("explain", False)),
            "kids": bool(case.get("kids", False))}


def predicted_fields(u: Understanding, last_items: list[int]) -> dict:
    """An ``Understanding`` reduced to the gold's fields (mentions count as liked, as in the manager)."""
    def mentions(*kinds):
        return {m.item_id if m.item_id is not None else m.candidates[0]
                for m in u.titles if m.kind in kinds and (m.item_id is not None or m.candidates)}

    def refs(positions):
        return {last_items[p] for p in positions if 0 <= p < len(last_items)}

    aud = (u.audience or "").lower()
    return {"include": set(u.include_genres), "exclude": set(u.exclude_genres),
            "years": (u.year_min, u.year_max),
            "liked": mentions("liked", "mention") | refs(u.like_refs),
            "disliked": mentions("disliked") | refs(u.dislike_refs),
            "seen": mentions("seen") | refs(u.seen_refs),
            "explain": bool(u.wants_explanation or u.explain_refs or any(m.kind == "explain" for m in u.titles)),
            "kids": any(w in aud for w in KID_WORDS)}


def field_correct(name: str, gold, pred) -> bool:
    if name == "years":
        return all((g is None and p is None) or (g is not None and p is not None and abs(g - p) <= 1)
                   for g, p in zip(gold, pred))
    return gold == pred


def score(golds: list[dict], preds: list[dict]) -> dict:
    """Per-field accuracy, all fields right, and the errors (for reading)."""
    right = {f: [field_correct(f, g[f], p[f]) for g, p in zip(golds, preds)] for f in FIELDS}
    all_right = [all(right[f][i] for f in FIELDS) for i in range(len(golds))]
    return {"field_accuracy": {f: round(float(np.mean(v)), 4) for f, v in right.items()},
            "mean_field_accuracy": round(float(np.mean([np.mean(v) for v in right.values()])), 4),
            "all_fields_right": round(float(np.mean(all_right)), 4),
            "wrong": [[i, f] for i in range(len(golds)) for f in FIELDS if not right[f][i]]}


def run(cases: list[dict], finder, genres: list[str], llm_understander: LLMUnderstander | None = None,
        progress: bool = True) -> dict:
    from tqdm.auto import tqdm

    golds = [gold_fields(c, finder) for c in cases]
    out = {}
    paths = {"rules": None} | ({"llm": llm_understander} if llm_understander is not None else {})
    for name, und in paths.items():
        preds, times, outcomes, logs = [], [], {}, []
        for n, c in enumerate(tqdm(cases, desc=name, disable=not progress)):
            last_titles = list(c.get("last", []))
            last_items = [_item(finder, t) for t in last_titles]
            t0 = time.perf_counter()
            if und is None:
                u, log = parse_message(c["text"], finder, genres, len(last_titles)), []
            else:
                u, log = und.understand(c["text"], last_titles)
            times.append(time.perf_counter() - t0)
            outcomes[u.source] = outcomes.get(u.source, 0) + 1
            preds.append(predicted_fields(u, last_items))
            logs.append(log)
            if not progress and und is not None:
                print(f"{name} {n + 1}/{len(cases)}: {u.source}, {times[-1]:.1f} s", flush=True)
        out[name] = score(golds, preds) | {"logs": logs} | {
            "latency_p50_s": round(float(np.percentile(times, 50)), 4),
            "latency_p95_s": round(float(np.percentile(times, 95)), 4), "sources": outcomes}
    return out


def markdown(report: dict) -> str:
    paths = report["paths"]
    lines = [f"# Message understanding: {report['dataset']}", "",
             f"{report['n_cases']} hand-labelled messages (`{report['gold']}`); LLM {report['llm']}.", "",
             run_line(report["run"]), "",
             "Each field must match the gold exactly (years within one year); a field the gold leaves empty "
             "must come back empty. `sources` says which path produced the result (llm = JSON accepted at "
             "the first try, llm-repaired = after one repair, rules = fell back).", "",
             "| path | " + " | ".join(FIELDS) + " | mean | all fields right | p50 s | p95 s | sources |",
             "|---|" + "---|" * (len(FIELDS) + 5)]
    for name, r in paths.items():
        fa = r["field_accuracy"]
        lines.append(f"| {name} | " + " | ".join(f"{fa[f]:.2f}" for f in FIELDS)
                     + f" | {r['mean_field_accuracy']:.3f} | {r['all_fields_right']:.3f} | {r['latency_p50_s']} "
                     f"| {r['latency_p95_s']} | {r['sources']} |")
    lines += ["", "Errors (case number, field):", ""]
    for name, r in paths.items():
        lines.append(f"- {name}: " + (", ".join(f"{i + 1}:{f}" for i, f in r["wrong"]) or "none"))
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m dialog.eval.bench_understanding", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(ap, reports=True)
    ap.add_argument("--llm", default=None, help="LLM for the llm path (e.g. qwen2.5-coder-1.5b); rules only without it")
    add_runtime_args(ap)
    ap.add_argument("--gold", default=str(GOLD), help="JSONL of labelled messages")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    from dialog.manager import build_manager
    from retrieval.resources import load_resources

    meta = Run.for_module("dialog.eval.bench_understanding", argv)
    cases = load_gold(a.gold)
    res = load_resources(a.dataset, a.artifacts, a.data_dir)
    manager = build_manager(res)
    und = None
    if a.llm:
        from dialog.llm import LocalChatModel
        chat = LocalChatModel.load(a.llm, runtime_config(a))
        und = LLMUnderstander(chat, manager.finder, manager.genres)
        und.understand("Hello!", [])   # warm-up (weight repacking, prefix cache): not timed
    paths = run(cases, manager.finder, manager.genres, und, progress=not a.no_progress)
    report = {"dataset": a.dataset, "gold": Path(a.gold).name, "n_cases": len(cases),
              "llm": f"{a.llm} ({chat.backend})" if a.llm else None,
              "backend": chat.backend if a.llm else None, "paths": paths,
              "run": meta.finish()}
    write_report(a.out, f"understanding_{a.dataset}", report, markdown, echo=True)
    return report


if __name__ == "__main__":
    main()
