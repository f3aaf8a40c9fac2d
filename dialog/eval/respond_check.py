"""Every seeker message of the CRS dev parts through the page's path, ``DialogManager.respond``.

    python -m dialog.eval.respond_check                       # both dev parts -> reports/respond_check.{json,md}
    python -m dialog.eval.respond_check --crs redial --limit 50

The batch command's path (``dialog.batch``: user turns only update the state) is checked by every
``dialog.eval.crs`` run; this one checks what a person's message goes through on the chat page:
understanding, the state update, retrieval, ranking and the template reply (no LLM), turn by turn.
Each dialog is replayed once, from its longest sample (the one whose context holds the most turns):
the seeker's turns through ``respond`` (the state carried from turn to turn, as on the page), the
recommender's through ``observe_assistant``. Nothing is scored and nothing is learnt; the command
counts the messages whose turn raised, lists the first of them with the exception, and times each
turn (milliseconds). Exit status 1 when any turn raised, so it can gate a change.
"""
from __future__ import annotations

import argparse
import sys
import time
import traceback

import numpy as np
from tqdm.auto import tqdm

from retrieval.cli import add_data_args
from retrieval.crs_data import CRS_DATASETS, CRSDataError, batch_conversation, dialog_key, load_crs
from retrieval.eval.report import Run, md_table, run_line, write_report

MAX_LISTED = 20


def longest_per_dialog(samples) -> list:
    """One sample per dialog, the one whose context holds the most turns (file order kept)."""
    best: dict[str, object] = {}
    for s in samples:
        k = dialog_key(s)
        if k not in best or len(s.context) > len(best[k].context):
            best[k] = s
    return list(best.values())


def check_conversation(manager, conv: dict) -> tuple[list[float], list[dict]]:
    """Replay one batch-format conversation through ``respond``: (ms per seeker turn, errors)."""
    state = manager.new_state(conv.get("user_id"))
    times, errors = [], []
    for i, t in enumerate(conv["turns"]):
        if t["role"] == "assistant":
            state = manager.observe_assistant(state, t["text"])
            continue
        t0 = time.perf_counter()
        try:
            turn = manager.respond(state, t["text"])
            if turn is None or not isinstance(turn.reply, str):
                raise RuntimeError("respond returned no turn")
            state = turn.state
        except Exception as e:      # noqa: BLE001 - the point is to catch whatever a turn raises
            errors.append({"id": conv["id"], "turn": i, "text": t["text"][:200],
                           "error": f"{type(e).__name__}: {e}"[:300],
                           "where": traceback.format_exc(limit=-2).strip().splitlines()[-3:]})
        times.append((time.perf_counter() - t0) * 1000)
    return times, errors


def check(manager, conversations: list[dict], progress: bool = True, desc: str = "dialogs") -> dict:
    """The summary of ``check_conversation`` over conversations."""
    times, errors = [], []
    for conv in tqdm(conversations, desc=desc, disable=not progress, file=sys.stderr):
        t, e = check_conversation(manager, conv)
        times += t
        errors += e
    ms = np.asarray(times) if times else np.zeros(1)
    return {"dialogs": len(conversations), "messages": len(times), "errors": len(errors),
            "ms_per_turn": {"p50": round(float(np.percentile(ms, 50)), 1),
                            "p95": round(float(np.percentile(ms, 95)), 1),
                            "max": round(float(ms.max()), 1)},
            "first_errors": errors[:MAX_LISTED]}


def markdown(report: dict) -> str:
    rows = [[ds, r["dialogs"], r["messages"], r["errors"], r["ms_per_turn"]["p50"], r["ms_per_turn"]["p95"],
             r["ms_per_turn"]["max"]] for ds, r in report["sets"].items()]
    lines = ["# Every dev message through DialogManager.respond (the page's path, no LLM)", "",
             run_line(report["run"]), "",
             f"Catalogue and artefacts: {report['dataset']}; each dialog once, from its longest sample.", "",
             *md_table(["dev part", "dialogs", "seeker messages", "turns that raised", "ms p50", "ms p95",
                        "ms max"], rows)]
    for ds, r in report["sets"].items():
        for e in r["first_errors"]:
            lines += ["", f"- {ds} `{e['id']}` turn {e['turn']}: {e['error']} (message: {e['text']!r})"]
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m dialog.eval.respond_check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--crs", default=",".join(CRS_DATASETS), help="CRS data sets, comma-separated")
    p.add_argument("--crs-dir", default=None, help="the crs folder itself (default <data root>/crs)")
    add_data_args(p, reports=True)
    p.add_argument("--limit", type=int, default=None, metavar="N", help="at most N dialogs per data set")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    datasets = [d.strip() for d in a.crs.split(",") if d.strip()]
    unknown = [d for d in datasets if d not in CRS_DATASETS]
    if unknown or not datasets:
        p.error(f"unknown CRS data set(s) {unknown}; known: {', '.join(CRS_DATASETS)}")
    if a.limit is not None and a.limit < 1:
        p.error("--limit must be at least 1")
    run = Run.for_module("dialog.eval.respond_check", argv)
    try:
        convs = {ds: [batch_conversation(s) for s in longest_per_dialog(load_crs(ds, "dev", a.data_dir,
                                                                              root=a.crs_dir))][:a.limit]
                 for ds in datasets}
    except CRSDataError as e:
        p.exit(2, f"{p.prog}: error: {e}\n")
    from dialog.manager import build_manager
    from retrieval.data import DataError
    from retrieval.resources import ArtifactError, load_resources
    try:
        manager = build_manager(load_resources(a.dataset, a.artifacts, a.data_dir))
    except (ArtifactError, DataError) as e:
        p.exit(2, f"{p.prog}: error: {e}\n")
    sets = {ds: check(manager, c, not a.no_progress, desc=ds) for ds, c in convs.items()}
    report = {"dataset": a.dataset, "split": "dev", "sets": sets, "run": run.finish()}
    write_report(a.out, "respond_check", report, markdown, echo=True)
    n_err = sum(r["errors"] for r in sets.values())
    if n_err:
        print(f"{n_err} turns raised; see {a.out}/respond_check.md", file=sys.stderr)
        raise SystemExit(1)
    return report


if __name__ == "__main__":
    main()
