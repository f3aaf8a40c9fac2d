"""``python -m app.export --db PATH --out FILE.jsonl``: the stored conversations as JSON lines,
one conversation per line with its turns and card feedback nested."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app.store import Store, StoreError


def export(db: Path, out: Path) -> int:
    """Write every conversation in ``db`` to ``out``; returns how many."""
    store = Store(db)
    try:
        convs = store.conversations()
    finally:
        store.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        for c in convs:
            f.write(json.dumps(c, ensure_ascii=False) + "\n")
    return len(convs)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", required=True, type=Path, help="the SQLite file the app wrote (--db of app.main)")
    ap.add_argument("--out", required=True, type=Path, help="JSONL file to write")
    args = ap.parse_args(argv)
    if not args.db.is_file():
        print(f"error: no database at {args.db}", file=sys.stderr)
        return 2
    try:
        n = export(args.db, args.out)
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {n} conversations to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
