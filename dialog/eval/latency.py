"""Per-turn latency of the full system with the LLM writing (and optionally understanding) replies.

    python -m dialog.eval.latency --llm qwen2.5-coder-1.5b --n-users 8 --turns 2

Runs simulated conversations (template simulator, the evaluation's test users) through the
manager's ``stream`` and times, per turn: the pipeline (everything except LLM generation:
understanding by rules, state update, policy, retrieve, filter, rank, explain), the first streamed
token of the reply, and the complete reply (the final ``Turn``). The first token counts only if it
is the start of the final reply: when a draft that was streamed fails the title check and is
replaced, the person sees the real reply only when it is complete, so its first token is timed
then. The LLM is warmed up first (``DialogManager.warm_up``, timed apart), as the app does at
start. The load average before and after is recorded: on a shared 2-core machine it moves the
numbers a lot. Writes ``reports/sim_latency_<dataset>_<mode>.json`` and ``.md``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from ilm.runtime.cli import add_runtime_args, runtime_config
from retrieval.cli import add_data_args
from retrieval.eval.report import Run, run_line, write_report


def pct(xs, q):
    return round(float(np.percentile(xs, q)), 3) if len(xs) else None


def time_turn(mgr, state, text: str):
    """One turn through ``mgr.stream``, timed. Returns (the final ``Turn``, a row of timings).

    ``first_token_s`` is when the first streamed text appeared if the final reply starts with it;
    otherwise (a streamed draft failed the check and was replaced) when the complete reply came.
    """
    from dialog.manager import Turn
    start, cpu0 = time.perf_counter(), time.process_time()
    first_chunk, first_text, streamed, final = None, None, "", None
    for part in mgr.stream(state, text):
        if isinstance(part, Turn):
            final = part
            continue
        streamed += part
        if first_chunk is None and streamed.strip():
            first_chunk, first_text = time.perf_counter() - start, streamed
    total = time.perf_counter() - start
    real_start = first_text is not None and final.reply.startswith(first_text)
    return final, {"action": final.action, "pipeline_s": final.timings["pipeline"] / 1e3,
                   "first_token_s": first_chunk if real_start else total, "first_chunk_s": first_chunk,
                   "first_text": (first_text or "")[:60],
                   "stream_was_reply": streamed == final.reply, "total_s": total,
                   "cpu_s": round(time.process_time() - cpu0, 2),
                   "reply_log": next((e.summary for e in final.trace if e.tool == "reply"), ""),
                   "user_text": text, "reply": final.reply}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m dialog.eval.latency", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p, reports=True)
    p.add_argument("--llm", default="qwen2.5-coder-1.5b")
    add_runtime_args(p)
    p.add_argument("--n-users", type=int, default=8)
    p.add_argument("--turns", type=int, default=2)
    p.add_argument("--llm-understanding", action="store_true", help="also extract state updates with the LLM")
    p.add_argument("--reply-mode", default="intro", choices=("intro", "full"))
    p.add_argument("--max-new-tokens", type=int, default=None, help="default: 24 (intro) / 150 (full)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    from dialog.eval.simulator import (
        TargetFacts,
        TemplateSimulator,
        personas,
        sample_users,
    )
    from dialog.llm import LocalChatModel
    from dialog.manager import build_manager
    from retrieval.resources import load_resources

    run = Run.for_module("dialog.eval.latency", argv)
    res = load_resources(a.dataset, a.artifacts, a.data_dir)
    t_load = time.perf_counter()
    chat = LocalChatModel.load(a.llm, runtime_config(a))
    load_s = time.perf_counter() - t_load
    mgr = build_manager(res, chat=chat, llm_understanding=a.llm_understanding, reply_mode=a.reply_mode,
                        reply_tokens=a.max_new_tokens)
    warm_up_s = mgr.warm_up()
    sim = TemplateSimulator(TargetFacts(res.catalog, res.text_embeds, res.popularity), seed=a.seed)
    people = personas(res.split, sample_users(res.split, a.n_users, a.seed))
    res.encode(["warm up"])
    rows = []
    for person in people:
        state = mgr.new_state(person.user_id)
        msg = sim.opening(person)
        for turn in range(1, a.turns + 1):
            final, row = time_turn(mgr, state, msg.text)
            rows.append({"user": person.user_id, "turn": turn, **row})
            first, total, cpu, reply_log = row["first_token_s"], row["total_s"], row["cpu_s"], row["reply_log"]
            print(f"user {person.user_id} turn {turn}: pipeline {rows[-1]['pipeline_s']:.3f}s, first token "
                  f"{round(first, 2)}s, total {total:.2f}s, cpu {cpu:.1f}s; {reply_log}", flush=True)
            state = final.state
            shown = [s.item_id for s in final.suggestions]
            if person.target in shown:
                break
            msg = sim.react(person, turn, shown, final.action == "ask")
    pipe = [r["pipeline_s"] for r in rows]
    first = [r["first_token_s"] for r in rows]
    total = [r["total_s"] for r in rows]
    llm_rows = [r for r in rows if r["reply_log"]]
    first_ok = sum("attempt 1 passed" in r["reply_log"] for r in llm_rows)
    llm_ok = sum("passed the" in r["reply_log"] for r in llm_rows)
    cpu_share = round(sum(r["cpu_s"] for r in rows) / max(sum(total), 1e-9), 2)
    report = {"dataset": a.dataset, "llm": a.llm, "backend": chat.backend,
              "quantize": a.quantize if chat.backend == "transformers" else None, "llm_understanding": a.llm_understanding,
              "reply_mode": a.reply_mode, "n_users": len(people), "n_turns": len(rows),
              "max_new_tokens": mgr.reply_writer.max_new_tokens, "seed": a.seed,
              "llm_load_s": round(load_s, 1), "warm_up_s": warm_up_s,
              "cpu_s_per_wall_s": cpu_share,
              "pipeline_p50_s": pct(pipe, 50), "pipeline_p95_s": pct(pipe, 95),
              "first_token_p50_s": pct(first, 50), "first_token_p95_s": pct(first, 95),
              "total_p50_s": pct(total, 50), "total_p95_s": pct(total, 95),
              "llm_turns": len(llm_rows), "llm_replies_passing_first_try": first_ok,
              "llm_replies_passing_check": llm_ok, "turns": rows, "run": run.finish()}
    meta = report["run"]
    stem = f"sim_latency_{a.dataset}_{a.reply_mode}" + ("_llmu" if a.llm_understanding else "")
    md = [f"# Per-turn latency with the LLM: {a.dataset}", "",
          f"LLM {a.llm} (backend {chat.backend}), reply mode {a.reply_mode}, LLM understanding "
          f"{'on' if a.llm_understanding else 'off (rules)'}, reply budget {mgr.reply_writer.max_new_tokens} new tokens; {len(rows)} turns of {len(people)} simulated test users "
          f"(seed {a.seed}). LLM load {report['llm_load_s']} s, warm-up {warm_up_s} s.", "", run_line(meta), "",
          f"Load average (1, 5, 15 min) at the end: {', '.join(map(str, meta['load_average_at_end']))}. "
          f"This process used {cpu_share} CPU-seconds per wall second "
          f"during the turns (threads that spin-wait for a busy core count too).", "",
          "| measure | p50 (s) | p95 (s) |", "|---|---|---|",
          f"| pipeline (all but generation) | {report['pipeline_p50_s']} | {report['pipeline_p95_s']} |",
          f"| first streamed token of the final reply | {report['first_token_p50_s']} | {report['first_token_p95_s']} |",
          f"| message to complete reply | {report['total_p50_s']} | {report['total_p95_s']} |", "",
          f"LLM replies that passed the title check: {first_ok} of {len(llm_rows)} at the first try, {llm_ok} "
          f"of {len(llm_rows)} after the one regeneration (the rest got the template). A first try that "
          f"failed was streamed and then replaced, so its first token is timed at the complete reply.", "",
          "| user | turn | first token (s) | complete (s) | reply check | opening |", "|---|---|---|---|---|---|"]
    for r in rows:
        check = ("template" if "used the template" in r["reply_log"] else
                 "passed, 1st try" if "attempt 1 passed" in r["reply_log"] else
                 "passed, 2nd try" if "passed the" in r["reply_log"] else "no LLM")
        opening = r["reply"].split("\n")[0].replace("|", "/")
        md.append(f"| {r['user']} | {r['turn']} | {r['first_token_s']:.2f} | {r['total_s']:.2f} | {check} | {opening} |")
    write_report(a.out, stem, report, "\n".join(md), echo=True)
    return report


if __name__ == "__main__":
    main()
