"""Copy the latest benchmark tables from ``reports/*.json`` into README.md between markers, so the
README's numbers always match the committed reports.

    python -m training.report_tables [--readme README.md] [--reports reports]
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

START, END = "<!-- offline-table:start -->", "<!-- offline-table:end -->"
METRICS = ("hr@10", "ndcg@10", "hr@20", "ndcg@20")


def offline_table(reports: Path) -> str:
    lines = []
    for path in sorted(reports.glob("offline_*.json")):
        r = json.loads(path.read_text())
        lines += [f"**{r['dataset']}** ({r['n_users']} users, {r['n_items']} items; seed {r['seed']}; "
                  f"{r['hardware']}; wall time {r['wall_s']} s), test split, models chosen on validation:", "",
                  "| model | " + " | ".join(METRICS) + " | train s |", "|---" * (len(METRICS) + 2) + "|"]
        for name, m in r["models"].items():
            lines.append(f"| {name} | " + " | ".join(f"{m['test'][k]:.4f}" for k in METRICS) + f" | {m['train_s']} |")
        lines.append("")
    return "\n".join(lines) if lines else "_no offline report yet: run `make bench`_\n"


def update_readme(readme: Path, reports: Path) -> None:
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{readme} lacks the markers {START} ... {END}")
    block = f"{START}\n{offline_table(reports)}\n{END}"
    readme.write_text(re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m training.report_tables", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--readme", type=Path, default=Path("README.md"))
    p.add_argument("--reports", type=Path, default=Path("reports"))
    a = p.parse_args(argv)
    update_readme(a.readme, a.reports)


if __name__ == "__main__":
    main()
