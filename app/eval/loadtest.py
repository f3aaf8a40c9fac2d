"""Load test of the chat page (not part of ``make test``): N simulated people chat at once through
``gradio_client`` against a local server, T turns each; writes ``reports/load.md``.

  python -m app.eval.loadtest [--people 20] [--turns 5] [--dataset ml-latest-small] [--artifacts artifacts]
                         [--llm SPEC | --small | --no-llm] [--llm-backend auto] [--url http://127.0.0.1:7860]
                         [--out reports]

Without ``--url`` it starts ``python -m app.main`` on a free port with a fresh SQLite file and stops
it afterwards. Cross-talk checks: every person asks for movies made after their own year, so
after each of their turns the state panel must show their turn count and their year and nobody
else's, the conversation returned must hold only their messages, and (when this script started
the server) every stored conversation must hold one person's messages only.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from retrieval.cli import add_data_args
from retrieval.eval.report import Run, run_line, write_report

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

GENRES = ["comedy", "drama", "thriller", "sci-fi", "romance", "action", "animated", "crime", "horror", "adventure"]
FOLLOW_UPS = ["something a bit funnier", "no horror please", "more like the first one", "something else"]


def year_of(person: int) -> int:
    return 1950 + 2 * person        # unique per person (20 people: 1950..1988)


def script(person: int, turns: int) -> list[str]:
    first = f"a {GENRES[person % len(GENRES)]} movie made after {year_of(person)}"
    return [first] + [FOLLOW_UPS[i % len(FOLLOW_UPS)] for i in range(turns - 1)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen | None, timeout: float) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url + "/config", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise RuntimeError(f"the server at {url} was not ready after {timeout:.0f}s")


def message_text(content) -> str:
    """A chat message's text: Gradio 6 sends content as a list of {"type": "text", "text": ...} parts."""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content or "")


def check_turn(person: int, k: int, chat: list, state_html: str) -> list[str]:
    """Cross-talk problems seen in one turn's outputs (empty: none)."""
    problems = []
    m = re.search(r"Turn (\d+)", state_html)
    if not m or int(m.group(1)) != k:
        problems.append(f"person {person} turn {k}: state panel says {m.group(0) if m else 'no turn'}")
    years = {int(y) for y in re.findall(r"Years: (\d{4}) to", state_html)}
    own = year_of(person)
    if len(years) != 1 or years - {own, own + 1}:
        problems.append(f"person {person} turn {k}: state shows years {sorted(years)}, not their own {own}")
    users = [message_text(m_.get("content")) for m_ in chat if m_.get("role") == "user"]
    mine = script(person, 99)
    for u in users:
        plain = re.sub(r"\\(.)", r"\1", str(u))
        if plain not in mine:
            problems.append(f"person {person} turn {k}: conversation holds a message that is not theirs: {plain[:60]!r}")
    return problems


def run_person(url: str, person: int, turns: int, results: dict, lock: threading.Lock) -> None:
    from gradio_client import Client
    latencies, errors, problems = [], [], []
    try:
        client = Client(url, verbose=False, analytics_enabled=False, download_files=False)
    except Exception as e:  # a person who cannot connect is an error of the run, not a crash of it
        errors.append(f"person {person}: connect: {type(e).__name__}: {e}")
        client = None
    chat: list = []
    for k, text in enumerate(script(person, turns) if client else [], 1):
        t0 = time.perf_counter()
        try:
            out = client.predict(text, chat, api_name="/chat")
        except Exception as e:
            errors.append(f"person {person} turn {k}: {type(e).__name__}: {str(e)[:200]}")
            continue
        latencies.append(time.perf_counter() - t0)
        _, chat, state_html, _why, _notice = out
        reply = message_text(chat[-1].get("content")) if chat else ""
        if "Sorry, that went wrong" in reply or not reply.strip():
            errors.append(f"person {person} turn {k}: no reply, or the page showed an error: {reply[:200]!r}")
        problems += check_turn(person, k, chat, state_html)
    with lock:
        results["latencies"] += latencies
        results["errors"] += errors
        results["problems"] += problems
        results["turns_done"] += len(latencies)


def check_store(db: Path, people: int, turns: int) -> list[str]:
    """Every stored conversation holds one person's script only, and each person's turns are there."""
    con = sqlite3.connect(str(db))
    rows = con.execute("SELECT conversation_id, user_text FROM turns ORDER BY id").fetchall()
    con.close()
    owner_of = {}
    for p in range(people):
        owner_of.setdefault(script(p, turns)[0], p)
    by_conv: dict[str, list[str]] = {}
    for cid, text in rows:
        by_conv.setdefault(cid, []).append(text)
    problems = []
    for cid, texts in by_conv.items():
        owners = {owner_of[t] for t in texts if t in owner_of}
        if len(owners) != 1 or texts[0] not in owner_of or len(texts) != turns:
            problems.append(f"stored conversation {cid[:8]}: {len(texts)} turns, first {texts[0][:40]!r}, "
                            f"owners {sorted(owners)}")
    if len(by_conv) != people:
        problems.append(f"{len(by_conv)} stored conversations for {people} people")
    return problems


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def server_command(args, port: int, db: Path) -> list[str]:
    """The ``python -m app.main`` command line of the server this script starts."""
    cmd = [sys.executable, "-m", "app.main", "--port", str(port), "--dataset", args.dataset,
           "--artifacts", str(args.artifacts), "--db", str(db), "--concurrency", str(args.concurrency)]
    if args.data_dir:
        cmd += ["--data-dir", str(args.data_dir)]
    if args.small:
        cmd += ["--small"]
    elif args.no_llm:
        cmd += ["--no-llm"]
    elif args.llm:
        cmd += ["--llm", args.llm]
    if args.llm_backend:
        cmd += ["--llm-backend", args.llm_backend]
    return cmd


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m app.eval.loadtest", description=__doc__.split("\n")[0])
    ap.add_argument("--people", type=int, default=20)
    ap.add_argument("--turns", type=int, default=5)
    ap.add_argument("--url", default=None, help="an already running server (default: start one)")
    add_data_args(ap, reports=True)
    llm = ap.add_mutually_exclusive_group()
    llm.add_argument("--llm", default=None, help="the server's LLM (default: the app's default LLM)")
    llm.add_argument("--small", action="store_true", help="the small LLM (smollm2-135m)")
    llm.add_argument("--no-llm", action="store_true", help="rules and template replies")
    ap.add_argument("--llm-backend", default=None, help="the server's --llm-backend (default: auto)")
    ap.add_argument("--concurrency", type=int, default=2, help="the server's --concurrency")
    ap.add_argument("--ready-timeout", type=float, default=600)
    ap.add_argument("--note", default="", help="a sentence about this run to put in the report")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    meta = Run.for_module("app.eval.loadtest", argv)

    proc, db, log_path = None, None, None
    url = args.url
    llm_used = "?"
    if url is None:
        tmp = Path(tempfile.mkdtemp(prefix="loadtest-"))
        db, log_path = tmp / "conversations.sqlite", tmp / "server.log"
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        cmd = server_command(args, port, db)
        print(f"[load] starting {' '.join(cmd)} (log: {log_path})", flush=True)
        proc = subprocess.Popen(cmd, stdout=open(log_path, "w"), stderr=subprocess.STDOUT)
    else:
        llm_used = "whatever the server at --url was started with"
    try:
        t_ready = time.perf_counter()
        wait_ready(url, proc, args.ready_timeout)
        if log_path is not None:        # the server says which LLM and backend it loaded
            m = re.search(r"\(llm: (.*)\)\s*$", log_path.read_text(errors="replace"), re.M)
            llm_used = m.group(1) if m else "?"
        print(f"[load] server ready after {time.perf_counter() - t_ready:.0f}s; "
              f"{args.people} people x {args.turns} turns ...", flush=True)
        results = {"latencies": [], "errors": [], "problems": [], "turns_done": 0}
        lock = threading.Lock()
        threads = [threading.Thread(target=run_person, args=(url, p, args.turns, results, lock))
                   for p in range(args.people)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        if db is not None:
            results["problems"] += check_store(db, args.people, args.turns)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()

    lat = results["latencies"]
    manifest = Path(args.artifacts) / args.dataset / "manifest.json"
    built = (json.loads(manifest.read_text()).get("config", "?") if manifest.is_file() and not args.url else "?")
    expected = args.people * args.turns
    report = {"dataset": args.dataset, "people": args.people, "turns": args.turns, "llm": llm_used,
              "server_concurrency": args.concurrency, "turns_done": results["turns_done"], "expected": expected,
              "errors": results["errors"], "problems": results["problems"],
              "latency_p50_s": pct(lat, 0.5), "latency_p95_s": pct(lat, 0.95),
              "latency_max_s": max(lat) if lat else None, "wall_s": round(wall, 1),
              "throughput_turns_s": round(results["turns_done"] / wall, 3), "run": meta.finish()}
    lines = [
        "# Load test: concurrent people on the chat page",
        "",
        f"- {run_line(report['run'])}",
        f"- Server: {'started by the script' if proc else args.url}; dataset {args.dataset}, artefacts "
        f"`{args.artifacts}` (built with config `{built}`); LLM: {llm_used}; server concurrency {args.concurrency} turns at once",
        f"- Clients: {args.people} simulated people, {args.turns} turns each, all at once, through `gradio_client`",
    ] + ([f"- Note: {args.note}"] if args.note else []) + [
        "",
        "| measure | value |",
        "|---|---|",
        f"| turns completed | {results['turns_done']} / {expected} |",
        f"| errors | {len(results['errors'])} |",
        f"| cross-talk problems | {len(results['problems'])} |",
        f"| turn latency p50 | {pct(lat, 0.5):.2f} s |",
        f"| turn latency p95 | {pct(lat, 0.95):.2f} s |",
        f"| turn latency max | {max(lat) if lat else float('nan'):.2f} s |",
        f"| turn latency mean | {statistics.mean(lat) if lat else float('nan'):.2f} s |",
        f"| wall time | {wall:.1f} s |",
        f"| throughput | {results['turns_done'] / wall:.2f} turns/s |",
        "",
        "Latency is the time one `predict` call takes from the client's side: the queue wait behind the",
        "other people plus the turn itself (the server computes a limited number of turns at once).",
        "Cross-talk checks: each person's state panel shows their own turn count and year and no one",
        "else's; the returned conversation holds only their messages"
        + ("; every stored conversation holds one person's turns only." if db else "."),
    ]
    for title, items in (("Errors", results["errors"]), ("Cross-talk problems", results["problems"])):
        if items:
            lines += ["", f"## {title} (first 20)", ""] + [f"- {e}" for e in items[:20]]
    paths = write_report(args.out, "load", report, "\n".join(lines))
    print("\n".join(lines[6:16]))
    print(f"[load] wrote {paths['md']}")
    return 0 if not results["errors"] and not results["problems"] else 1


if __name__ == "__main__":
    sys.exit(main())
