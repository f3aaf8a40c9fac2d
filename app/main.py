"""The command line entry: parse arguments, load the built artefacts, build the dialog manager and
launch the chat page (or, with ``--print-recs``, print one turn's suggestions without a browser).

  python -m app.main [--host 127.0.0.1] [--port 7860] [--dataset ml-latest-small]
                     [--artifacts artifacts] [--llm SPEC | --small | --no-llm] [--llm-backend auto]
                     [--db conversations.sqlite]

The default LLM (Qwen2.5-Coder-1.5B through llama.cpp when it is installed) writes the replies'
opening sentence; every title it writes is checked against the catalogue. ``--no-llm`` serves
rules and template replies (fast, no model).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from pathlib import Path

from ilm.config import DEFAULT_LLM
from ilm.runtime.cli import add_runtime_args, runtime_config
from retrieval.cli import add_data_args

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SMALL_LLM = "smollm2-135m"


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m app.main", description="Chat with the movie recommender.")
    ap.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=7860, help="port to serve on (default 7860)")
    add_data_args(ap)
    llm = ap.add_mutually_exclusive_group()
    llm.add_argument("--llm", default=DEFAULT_LLM,
                     help=f"LLM for the replies: {DEFAULT_LLM} (default), {SMALL_LLM}, a GGUF file or a "
                          "local model directory")
    llm.add_argument("--small", action="store_true", help=f"use the small fast LLM ({SMALL_LLM}) for quick demos")
    llm.add_argument("--no-llm", action="store_true", help="no LLM: rules and template replies (fast)")
    add_runtime_args(ap)
    ap.add_argument("--ilm", default=None, type=Path, metavar="CHECKPOINT",
                    help="the dialog ILM (`make ilm-dialog` writes <artifacts>/<dataset>/ilm_dialog): its score "
                         "joins the ranker, with the weights fitted with it (default: none)")
    ap.add_argument("--db", default=None, type=Path,
                    help="SQLite file for conversations (default: <artifacts>/conversations.sqlite)")
    ap.add_argument("--reports", default="reports", type=Path, help="folder the evaluation tab reads")
    ap.add_argument("--concurrency", type=int, default=2, help="turns computed at once (default 2; the LLM "
                    "writes one reply at a time, the other waits and the page says it is queued)")
    ap.add_argument("--queue-size", type=int, default=64,
                    help="turns that may wait; beyond it a person is told the page is busy (default 64)")
    ap.add_argument("--print-recs", metavar="MESSAGE", default=None,
                    help="print the reply and suggestions for MESSAGE and exit (no browser)")
    ap.add_argument("--user", type=int, default=None, help="with --print-recs: start as this MovieLens user")
    return ap.parse_args(argv)


def load_manager(args):
    """(manager, resources) from the artefacts; ``ArtifactError`` names what is missing."""
    from dialog.manager import build_manager
    from retrieval.resources import load_resources
    resources = load_resources(args.dataset, args.artifacts, data_dir=args.data_dir)
    llm = chosen_llm(args)
    if args.ilm is not None and not Path(args.ilm).is_dir():
        raise FileNotFoundError(f"no dialog ILM checkpoint at {args.ilm}; train one with `make ilm-dialog`")
    try:
        manager = build_manager(resources, llm=llm, runtime=runtime_config(args), ilm=args.ilm)
    except _llm_load_errors() as e:
        if llm is None:
            raise
        # The chat stays usable without the LLM: rules and template replies, and a note saying why.
        why = f"the LLM {llm} could not be loaded ({type(e).__name__}: {e})"
        print(f"[app] warning: {why}; serving rules and template replies", file=sys.stderr, flush=True)
        args.no_llm = True
        manager = build_manager(resources, llm=None, ilm=args.ilm)
        manager.notes.append(f"Replies come from templates: {why}. Fix: `make llm-weights llama-cpp`, "
                             "or start with --no-llm.")
    return manager, resources


def _llm_load_errors() -> tuple[type[BaseException], ...]:
    from ilm.lm import ModelPackageError
    from ilm.runtime import BackendUnavailable
    # OSError: a missing or unreadable model file; ValueError: llama.cpp refusing a corrupt GGUF
    return (ModelPackageError, BackendUnavailable, OSError, ValueError)


def chosen_llm(args) -> str | None:
    return None if args.no_llm else SMALL_LLM if args.small else args.llm


def llm_line(manager, llm: str | None) -> str:
    chat = getattr(manager.reply_writer, "chat", None)
    backend = getattr(chat, "backend", None)
    return "none (rules and template replies)" if llm is None else f"{llm} via {backend}" if backend else llm


def warm_up(manager) -> None:
    t1 = time.perf_counter()
    try:
        manager.respond(manager.new_state(), "a comedy")
        print(f"[app] warm-up turn {time.perf_counter() - t1:.1f}s (in the background)", flush=True)
    except Exception as e:     # the page stays up; the first person's turn will show the problem
        print(f"[app] warning: the warm-up turn failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)


def print_recs(manager, message: str, user_id: int | None) -> None:
    turn = manager.respond(manager.new_state(user_id), message)
    print(turn.reply)
    for i, s in enumerate(turn.suggestions, 1):
        year = f" ({s.year})" if s.year else ""
        print(f"{i}. {s.title}{year} [{', '.join(s.genres)}] score {s.score:.3f}: {s.reason}")
    if turn.notice:
        print(f"note: {turn.notice}")


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from retrieval.resources import ArtifactError
    t0 = time.perf_counter()
    print(f"[app] loading {args.dataset} from {args.artifacts} ...", flush=True)
    try:
        manager, resources = load_manager(args)
    except ArtifactError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.print_recs is None:
        # The first turn loads the lazily loaded text encoder and runs the LLM once (~11 s on 2 cores
        # with Qwen): done while the page starts serving, so that a restart serves sooner; a person
        # who writes in those seconds waits for it like for any other turn.
        threading.Thread(target=warm_up, args=(manager,), daemon=True, name="warm-up").start()
    print(f"[app] ready in {time.perf_counter() - t0:.1f}s (llm: {llm_line(manager, chosen_llm(args))})",
          flush=True)
    for note in manager.notes:
        print(f"[app] note: {note}", flush=True)
    if args.print_recs is not None:
        print_recs(manager, args.print_recs, args.user)
        return 0

    from app.store import Store, StoreError
    args.db = args.db or args.artifacts / "conversations.sqlite"
    from app.ui import build_ui, launch_options
    try:
        store = Store(args.db)
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    meta = {"dataset": args.dataset, "llm": llm_line(manager, chosen_llm(args))}
    demo = build_ui(manager, store, user_ids=[int(u) for u in resources.split.user_ids],
                    reports_dir=args.reports, meta=meta, title="Movie chat")
    # Turns beyond the queue's size get Gradio's "queue is full, try again" at once, never a hang.
    demo.queue(default_concurrency_limit=args.concurrency, max_size=args.queue_size)
    print(f"[app] serving on http://{args.host}:{args.port} (conversations -> {args.db})", flush=True)
    demo.launch(server_name=args.host, server_port=args.port, show_error=False, quiet=True, **launch_options())
    return 0


if __name__ == "__main__":
    sys.exit(main())
