"""Build the artefacts the recommender loads: CF model, text embeddings, faiss indexes, the counts
of what people recommend in real conversations (the CRS data's fit parts), the people index.

    python -m training.build --dataset ml-latest-small --artifacts artifacts [--config default|smoke] [--unisrec]

Skips the work when valid artefacts already exist (``--force`` rebuilds). ``--unisrec`` also trains
the optional UniSRec-style model over the item texts (retrieval/unisrec.py; the ranker's
``unisrec`` feature), adding it to artefacts that lack it.
"""
from __future__ import annotations

import argparse
import os

import torch

from retrieval.cli import add_data_args
from retrieval.resources import (
    CONFIGS,
    ArtifactError,
    add_missing_parts,
    add_unisrec,
    build_resources,
    load_resources,
    missing_parts,
)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m training.build", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p)
    p.add_argument("--config", default="default", choices=sorted(CONFIGS))
    p.add_argument("--force", action="store_true", help="rebuild even if valid artefacts exist")
    p.add_argument("--unisrec", action="store_true",
                   help="also train the UniSRec-style text item model (a few minutes on 2 cores)")
    a = p.parse_args(argv)
    torch.set_num_threads(min(torch.get_num_threads(), os.cpu_count() or 1))
    if not a.force:
        try:
            res = load_resources(a.dataset, a.artifacts, a.data_dir)
            if missing_parts(res):
                print(f"[build] the artefacts lack (or hold an older format of) {', '.join(missing_parts(res))}; adding them")
                add_missing_parts(res, a.artifacts, a.data_dir)
            if a.unisrec and res.unisrec is None:
                add_unisrec(res, a.artifacts)
            print(f"[build] artefacts for {a.dataset} in {a.artifacts} are present and valid "
                  f"(built {res.manifest.get('created')}); --force rebuilds")
            return
        except ArtifactError as e:
            print(f"[build] {e}; building")
    res = build_resources(a.dataset, a.artifacts, a.config, a.data_dir)
    if a.unisrec:
        add_unisrec(res, a.artifacts, a.config)


if __name__ == "__main__":
    main()
