"""The command-line arguments every command shares, with one set of defaults.

  --dataset    a MovieLens data set (default ``retrieval.data.DEFAULT_DATASET``)
  --data-dir   the data root (default ``$ILMREC_DATA_DIR``, else ``../shared/data`` beside the repo)
  --artifacts  the artefact root that ``python -m training.build`` writes (default ``artifacts``)
  --out        where a measuring command writes its reports (default ``reports``)

``--out`` always means a reports folder; a command that writes one file names it otherwise.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from retrieval.data import DATASETS, DEFAULT_DATASET

DEFAULT_ARTIFACTS = Path("artifacts")
DEFAULT_REPORTS = Path("reports")
TIMED_DATASETS = tuple(d for d in DATASETS if d != "ml-1m")   # ml-1m has no timestamps here


def add_data_args(parser: argparse.ArgumentParser, *, artifacts: bool = True, reports: bool = False,
                  datasets: tuple[str, ...] = DATASETS) -> argparse.ArgumentParser:
    """Add --dataset and --data-dir, and --artifacts / --out when asked for."""
    parser.add_argument("--dataset", default=DEFAULT_DATASET, choices=datasets,
                        help=f"data set (default {DEFAULT_DATASET})")
    parser.add_argument("--data-dir", default=None, type=Path,
                        help="data root (default $ILMREC_DATA_DIR, else ../shared/data)")
    if artifacts:
        parser.add_argument("--artifacts", default=DEFAULT_ARTIFACTS, type=Path,
                            help=f"artefact root written by `make build` (default {DEFAULT_ARTIFACTS})")
    if reports:
        parser.add_argument("--out", default=DEFAULT_REPORTS, type=Path,
                            help=f"folder the reports go to (default {DEFAULT_REPORTS})")
    return parser
