"""Recommendations for outside evaluation sets of conversations, one JSONL line each.

    python -m dialog.batch --input conversations.jsonl --output recs.jsonl --k 10 --dataset ml-latest-small

Input lines: ``{"id": ..., "turns": [{"role": "user"|"assistant", "text": ...}, ...]}``. User turns
update the dialog state (titles, genres, years, negations, "the second one"); the catalogue titles
named in an assistant turn become the last suggestions (and count as shown, so they are not
recommended again). Output lines: ``{"id": ..., "items": [{"item_id", "movielens_id", "title",
"year"}, ...]}``, the top-k after the last turn. Nothing is trained on the input. A malformed line
gets ``{"id": ..., "items": [], "error": "..."}`` and the run goes on.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

from retrieval.cli import add_data_args


def replay(manager, conv: dict):
    """The dialog state after a conversation's turns (user turns update it, titles in assistant
    turns count as shown)."""
    if not isinstance(conv.get("turns"), list):
        raise ValueError("'turns' must be a list of {role, text}")
    state = manager.new_state(conv.get("user_id"))
    for t in conv["turns"]:
        if not isinstance(t, dict) or t.get("role") not in ("user", "assistant") or not isinstance(t.get("text"), str):
            raise ValueError(f"bad turn {str(t)[:80]!r}: need role user|assistant and text")
        state = manager.observe_user(state, t["text"]) if t["role"] == "user" else \
            manager.observe_assistant(state, t["text"])
    return state


def recommend_conversation(manager, conv: dict, k: int) -> list[dict]:
    return [{"item_id": s.item_id, "movielens_id": s.movielens_id, "title": s.title, "year": s.year}
            for s in manager.recommend(replay(manager, conv), k)]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m dialog.batch", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, help="conversations, JSONL")
    p.add_argument("--output", required=True, help="recommendations, JSONL")
    p.add_argument("--k", type=int, default=10)
    add_data_args(p)
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    from dialog.manager import build_manager
    from retrieval.resources import load_resources

    if a.k < 1:
        p.error("--k must be at least 1")
    src = Path(a.input)
    if not src.is_file():
        p.error(f"no such input file: {src}")
    lines = [ln for ln in src.read_text(encoding="utf-8").splitlines() if ln.strip()]
    manager = build_manager(load_resources(a.dataset, a.artifacts, a.data_dir))
    t0 = time.perf_counter()
    n_err = 0
    out_path = Path(a.output)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with open(out_path, "w", encoding="utf-8") as out:
        for n, line in enumerate(tqdm(lines, desc="conversations", disable=a.no_progress, file=sys.stderr)):
            cid = None
            try:
                conv = json.loads(line)
                if not isinstance(conv, dict):
                    raise ValueError("a line must be a JSON object")
                cid = conv.get("id", n)
                rec = {"id": cid, "items": recommend_conversation(manager, conv, a.k)}
            except (ValueError, TypeError) as e:     # json.JSONDecodeError is a ValueError
                n_err += 1
                rec = {"id": cid if cid is not None else n, "items": [], "error": str(e)[:300]}
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")
    wall = time.perf_counter() - t0
    stats = {"conversations": len(lines), "errors": n_err, "wall_s": round(wall, 2),
             "conversations_per_minute": round(60 * len(lines) / max(wall, 1e-9), 1)}
    print(json.dumps(stats), file=sys.stderr)
    return stats


if __name__ == "__main__":
    main()
