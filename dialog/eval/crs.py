"""CRS benchmark: recommend on real conversations (ReDial, OpenDialKG dev parts) and score the movies
the human recommender named next, with bootstrap CIs. One command runs every system on the same
samples:

    python -m dialog.eval.crs                                  # both data sets, popularity,text,full
    python -m dialog.eval.crs --crs redial --limit 150         # a quick run
    python -m dialog.eval.crs --mapping-only                   # mapping statistics only (no artefacts)

``--dataset`` names the MovieLens catalogue the movies are mapped to and the artefacts that are
loaded (default ml-latest-small); ``--crs`` the conversations.

Systems:
  popularity  train popularity (the conversational split's train part), without the context movies
  text        MiniLM embedding of the conversation (its latest turns, both sides, up to 1,000
              characters) against the item text index, without the context movies
  full        the product: the turns go through the dialog manager exactly as ``dialog.batch`` feeds
              them (``dialog.batch.recommend_conversation``: user turns update the state, titles in
              recommender turns count as shown), then its top 50; rule-based understanding
  NAME        with ``--predictions NAME=FILE``: the lists of an outside predictions file in the
              batch command's output format (``{"id", "items": [{"item_id", "movielens_id", ...}]}``,
              matched by ``movielens_id``, else ``item_id``), e.g. an older commit's
              ``python -m dialog.batch`` run from a git worktree:

    python -m dialog.eval.crs --export-batch /tmp/crs_dev.jsonl          # the dev samples as batch input
    (cd ../worktree && python -m dialog.batch --input /tmp/crs_dev.jsonl --output /tmp/before.jsonl --k 50)
    python -m dialog.eval.crs --predictions before=/tmp/before.jsonl

Data, fit/dev parts, title mapping and protocol: ``retrieval/crs_data.py``. Metrics per sample,
over the labels left after the protocol: recall@k = the fraction of the sample's labels in the top
k; ndcg@10 with binary gains (ideal = all labels first); each averaged over samples, with a
percentile bootstrap 95% interval resampling samples. Lists are de-duplicated before scoring; a
sample a system failed on (or that a predictions file lacks) scores 0.

Writes ``<out>/crs_<dataset>.json`` and ``.md`` per data set. The JSON:
  {"dataset": "redial"|"opendialkg", "split": "dev", "n_samples" (dev samples), "n_mapped" (with a
   mapped label), "n_eligible" (a label left after the protocol), "n_scored" (after --limit),
   "systems": {"<name>": {"recall@1", "recall@10", "recall@50", "ndcg@10", "n", "errors",
   "missing", "mean_list_len", "s_per_sample", "ci95": {"<metric>": [lo, hi]}}},
   "mapping": {... counts by rule and by reason ...}, "run": {...}}
A broken line in a data or predictions file is one error line on stderr; the rest is used.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from dialog.eval.evaluate import bootstrap_ci
from retrieval.cli import add_data_args
from retrieval.crs_data import (
    CRS_DATASETS,
    CRSDataError,
    EvalSample,
    TitleMapper,
    batch_conversation,
    crs_dir,
    fixed_subset,
    load_crs,
    prepare,
)
from retrieval.eval.report import Run, md_table, run_line, write_report

SYSTEMS = ("popularity", "text", "sasrec", "unisrec", "full")
DEFAULT_SYSTEMS = ("popularity", "text", "full")   # sasrec / unisrec: the sequential models alone
METRICS = ("recall@1", "recall@10", "recall@50", "ndcg@10")
K = 50                       # list length every system returns (recall@50)
TEXT_CHARS = 1000            # MiniLM reads 256 word pieces: keep the latest turns that fit
NAMES = {"redial": "ReDial", "opendialkg": "OpenDialKG"}


# ---- metrics ----
def sample_metrics(ranked: list[int], labels) -> dict[str, float]:
    """Recall@1/10/50 (fraction of ``labels`` in the top k) and NDCG@10 of one ranked list."""
    ranked = list(dict.fromkeys(int(i) for i in ranked))
    labels = set(int(i) for i in labels)
    if not labels:
        raise ValueError("a scored sample needs at least one label")
    out = {f"recall@{k}": len(labels & set(ranked[:k])) / len(labels) for k in (1, 10, 50)}
    dcg = sum(1.0 / np.log2(r + 2) for r, i in enumerate(ranked[:10]) if i in labels)
    ideal = sum(1.0 / np.log2(r + 2) for r in range(min(len(labels), 10)))
    out["ndcg@10"] = dcg / ideal
    return out


def score(lists: dict[str, list[int]], samples: list[EvalSample]) -> dict[str, np.ndarray]:
    """Per-sample metric arrays (a sample without a list scores 0)."""
    rows = [sample_metrics(lists.get(s.id, []), s.labels) for s in samples]
    return {m: np.array([r[m] for r in rows], dtype=np.float64) for m in METRICS}


def summarise(per_sample: dict[str, np.ndarray], n_boot: int = 1000, seed: int = 0) -> dict:
    out = {m: round(float(v.mean()), 4) if len(v) else float("nan") for m, v in per_sample.items()}
    out["n"] = len(per_sample[METRICS[0]])
    out["ci95"] = {m: bootstrap_ci(v, n_boot=n_boot, seed=seed) for m, v in per_sample.items()}
    return out


def paired_vs(per_sample: dict[str, dict[str, np.ndarray]], base: str = "full", metric: str = "recall@10",
              n_boot: int = 1000, seed: int = 0) -> dict[str, dict]:
    """For every system but ``base``: the mean per-sample difference ``base - system`` of ``metric``
    over the same samples and its bootstrap 95% interval (resampling samples, so both systems move
    together). {} when ``base`` was not scored."""
    if base not in per_sample:
        return {}
    ref = per_sample[base][metric]
    return {name: {"metric": metric, "diff": round(float((ref - v[metric]).mean()), 4) if len(ref) else float("nan"),
                   "ci95": bootstrap_ci(ref - v[metric], n_boot=n_boot, seed=seed)}
            for name, v in per_sample.items() if name != base}


# ---- systems: each returns {sample id: ranked item ids} and a count of failed samples ----
def rank_popularity(res, samples: list[EvalSample], k: int = K, progress: bool = True):
    order = np.argsort(-np.asarray(res.popularity), kind="stable")
    out = {}
    for s in tqdm(samples, desc="popularity", disable=not progress, file=sys.stderr):
        skip = set(s.context_items)
        out[s.id] = [int(i) for i in order[:k + len(skip)] if int(i) not in skip][:k]
    return out, 0


def conversation_text(sample, max_chars: int = TEXT_CHARS) -> str:
    """The latest non-empty turns (both sides) that fit in ``max_chars``, oldest first."""
    kept, size = [], 0
    for t in reversed([t.strip() for t in sample.context if t.strip()]):
        if kept and size + len(t) > max_chars:
            break
        kept.append(t[-max_chars:])
        size += len(t) + 1
    return "\n".join(reversed(kept))


def rank_text(res, samples: list[EvalSample], k: int = K, progress: bool = True, batch_size: int = 64):
    out = {}
    bar = tqdm(total=len(samples), desc="text", disable=not progress, file=sys.stderr)
    for start in range(0, len(samples), batch_size):
        chunk = samples[start:start + batch_size]
        q = np.asarray(res.encode([conversation_text(s.sample) for s in chunk]), dtype=np.float32)
        for s, vec in zip(chunk, q):
            out[s.id] = [int(i) for i, _ in res.text_index.search(vec, k, exclude_ids=set(s.context_items))]
        bar.update(len(chunk))
    bar.close()
    return out, 0


def rank_sequential(model, samples: list[EvalSample], k: int = K, progress: bool = True, name: str = "cf"):
    """A sequential model alone: the context's mapped movies, in order, as the history."""
    out = {}
    for s in tqdm(samples, desc=name, disable=not progress, file=sys.stderr):
        skip = set(s.context_items)
        scores = np.asarray(model.score(np.zeros(1, np.int64), [np.asarray(s.context_items, np.int64)])[0])
        order = np.argsort(-scores, kind="stable")[:k + len(skip)]
        out[s.id] = [int(i) for i in order if int(i) not in skip][:k]
    return out, 0


def rank_full(manager, samples: list[EvalSample], k: int = K, progress: bool = True):
    from dialog.batch import recommend_conversation
    out, n_err = {}, 0
    for s in tqdm(samples, desc="full", disable=not progress, file=sys.stderr):
        try:
            out[s.id] = [int(x["item_id"]) for x in recommend_conversation(manager, batch_conversation(s.sample), k)]
        except (ValueError, TypeError) as e:
            n_err += 1
            print(f"full: {s.id}: {str(e)[:200]}", file=sys.stderr)
    return out, n_err


def read_predictions(path, catalog, name: str = "predictions") -> tuple[dict[str, list[int]], set[str], dict]:
    """An outside predictions JSONL (``dialog.batch`` output) -> ({id: item ids}, ids whose line
    carries an ``"error"``, counts).

    Items are matched by ``movielens_id`` (so a list from another build of the catalogue still
    maps), else by ``item_id``. A broken line is one error line on stderr and is skipped (its
    sample counts as missing); a line with an ``"error"`` (the batch command's failed
    conversation) keeps its list, usually empty.
    """
    path = Path(path)
    n_items = len(catalog)
    by_ml = dict(zip(catalog.items["movielens_id"].astype(int), catalog.items["item_id"].astype(int)))
    out, errored = {}, set()
    counts = {"lines": 0, "broken_lines": 0, "error_lines": 0, "unknown_items": 0}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        counts["lines"] += 1
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict) or "id" not in obj or not isinstance(obj.get("items"), list):
                raise ValueError('a line must be an object with "id" and an "items" list')
            ids = []
            for it in obj["items"]:
                if not isinstance(it, dict):
                    raise ValueError("each item must be an object with movielens_id or item_id")
                ml, iid = it.get("movielens_id"), it.get("item_id")
                if isinstance(ml, int) and ml in by_ml:
                    ids.append(by_ml[ml])
                elif ml is None and isinstance(iid, int) and 0 <= iid < n_items:
                    ids.append(iid)
                else:
                    counts["unknown_items"] += 1
        except ValueError as e:
            counts["broken_lines"] += 1
            print(f"{name}: {path}:{n}: {str(e)[:200]}", file=sys.stderr)
            continue
        if obj.get("error"):
            counts["error_lines"] += 1
            errored.add(str(obj["id"]))
        out[str(obj["id"])] = ids
    return out, errored, counts


# ---- report ----
def markdown(report: dict) -> str:
    name, m = NAMES.get(report["dataset"], report["dataset"]), report["mapping"]
    run = report["run"]
    lines = [f"# CRS benchmark: {name} ({report['split']})", "",
             f"Real conversations, one sample per recommender turn; the labels are the movies the human "
             f"recommender named next, mapped to the {run.get('catalogue')} catalogue, without those already "
             f"named in the conversation. {report['n_samples']} dev samples, {report['n_mapped']} with a mapped "
             f"label, {report['n_eligible']} with a label left after the protocol; **{report['n_scored']} scored**"
             + (f" (`--limit {report['limit']}`)" if report.get("limit") else "") + ".", "",
             "recall@k: the fraction of a sample's labels in the top k, averaged over samples; "
             "95% bootstrap interval over samples in brackets; \"full - this\" is the mean per-sample "
             "difference to full over the same samples, with its paired bootstrap interval.", ""]
    rows = []
    for sys_name, s in report["systems"].items():
        ci, d = s["ci95"]["recall@10"], s.get("full_minus_this")
        rows.append([sys_name, s["n"], f"{s['recall@1']:.4f}", f"{s['recall@10']:.4f} [{ci[0]:.3f}, {ci[1]:.3f}]",
                     f"{d['diff']:+.4f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]" if d else "-",
                     f"{s['recall@50']:.4f}", f"{s['ndcg@10']:.4f}", s["errors"], s["missing"],
                     f"{s['mean_list_len']:.1f}", "-" if s["s_per_sample"] is None else s["s_per_sample"]])
    lines += md_table(["system", "samples", "recall@1", "recall@10 [95% CI]", "full - this, recall@10 (paired)",
                       "recall@50", "ndcg@10", "errors", "missing", "list length", "s / sample"], rows)
    lines += ["", "## Mapping (the whole dev part)", "",
              f"{m['labels_mapped']} of {m['labels']} labels mapped; {m['labels_named_in_context']} mapped labels "
              f"were already named in the context; {m['samples_all_labels_in_context']} samples had no label left.", ""]
    lines += md_table(["labels", "count"], [[f"mapped: {k}", v] for k, v in m["mapped_by"].items()]
                      + [[f"not mapped: {k}", v] for k, v in m["unmapped_by"].items()])
    lines += ["", "## How it was run", ""] + [f"- {n}" for n in run.get("notes", [])] + ["", run_line(run)]
    return "\n".join(lines) + "\n"


# ---- command ----


def _parse_named_files(p, specs: list[str], flag: str, taken=()) -> dict[str, Path]:
    out = {}
    for spec in specs:
        name, sep, file = spec.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z0-9_.+-]+", name) or not file:
            p.error(f"{flag} wants NAME=FILE (NAME of letters, digits, _ . + -), got {spec!r}")
        if name in SYSTEMS or name in out or name in taken:
            p.error(f"{flag} name {name!r} is taken; choose another")
        if not Path(file).is_file():
            p.error(f"{flag}: no such file: {file}")
        out[name] = Path(file)
    return out


def _catalogue(a):
    """Catalogue and train popularity from the data alone (for --mapping-only / --export-batch)."""
    from retrieval.catalog import build_catalog
    from retrieval.data import load_dataset
    from retrieval.splits import last_positive_holdout
    raw = load_dataset(a.dataset, a.data_dir)
    catalog = build_catalog(raw)
    return catalog, last_positive_holdout(raw, catalog).popularity()


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m dialog.eval.crs", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--crs", default=",".join(CRS_DATASETS),
                   help=f"CRS data sets, comma-separated, from {','.join(CRS_DATASETS)} (default both)")
    p.add_argument("--crs-dir", type=Path, default=None,
                   help="the folder holding redial/ and opendialkg/ (default <data-dir>/crs)")
    add_data_args(p, reports=True)
    p.add_argument("--systems", default=",".join(DEFAULT_SYSTEMS),
                   help=f"comma-separated, from {','.join(SYSTEMS)}; '' for only --predictions (default "
                        f"{','.join(DEFAULT_SYSTEMS)}; unisrec needs artefacts built with --unisrec)")
    p.add_argument("--predictions", action="append", default=[], metavar="NAME=FILE",
                   help="also score an outside predictions JSONL (dialog.batch output, run with --k 50) as "
                        "system NAME; repeatable")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="score only N samples per data set (a fixed pseudo-random subset: the eligible "
                        "samples ordered by sha256 of their id); mapping statistics stay on the whole part")
    p.add_argument("--export-batch", type=Path, default=None, metavar="FILE",
                   help="write the samples that would be scored (after --limit) as dialog.batch input, then stop")
    p.add_argument("--mapping-only", action="store_true",
                   help="print the mapping statistics of the fit and dev parts as JSON, then stop (no artefacts)")
    p.add_argument("--weights", default=None, help="ranker weights JSON for full (default: the shipped ones)")
    p.add_argument("--full-weights", action="append", default=[], metavar="NAME=FILE",
                   help="also score full with these ranker weights as system NAME (e.g. full+unisrec=w.json), "
                        "in the same run and paired with full; repeatable")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    a = p.parse_args(argv)

    datasets = [d.strip() for d in a.crs.split(",") if d.strip()]
    bad = [d for d in datasets if d not in CRS_DATASETS]
    if bad or not datasets:
        p.error(f"--crs: unknown {bad or a.crs!r}; choose from {','.join(CRS_DATASETS)}")
    names = [s.strip() for s in a.systems.split(",") if s.strip()]
    bad = [s for s in names if s not in SYSTEMS]
    if bad:
        p.error(f"unknown systems {bad}; choose from {','.join(SYSTEMS)}")
    outside = _parse_named_files(p, a.predictions, "--predictions")
    variants = _parse_named_files(p, a.full_weights, "--full-weights", taken=outside)
    if not names and not outside and not variants and not (a.export_batch or a.mapping_only):
        p.error("nothing to score: give --systems and/or --predictions")
    if a.limit is not None and a.limit < 1:
        p.error("--limit must be at least 1")

    run = Run.for_module("dialog.eval.crs", argv)
    progress = not a.no_progress
    broken: dict[str, int] = {}

    def load(ds: str, part: str):
        def on_error(msg: str) -> None:
            broken[ds] = broken.get(ds, 0) + 1
            print(f"crs: {msg}", file=sys.stderr)
        try:
            return load_crs(ds, part, a.data_dir, root=a.crs_dir, on_error=on_error)
        except CRSDataError as e:
            p.exit(2, f"{p.prog}: error: {e}\n")

    parts = ("fit", "dev") if a.mapping_only else ("dev",)
    raw = {(ds, part): load(ds, part) for ds in datasets for part in parts}     # data errors before models
    from retrieval.data import DataError
    from retrieval.resources import ArtifactError, load_resources
    res = None
    try:
        if a.mapping_only or a.export_batch or not (names or variants):
            catalog, popularity = _catalogue(a)
        else:
            res = load_resources(a.dataset, a.artifacts, a.data_dir)
            catalog, popularity = res.catalog, res.popularity
    except (ArtifactError, DataError) as e:
        p.exit(2, f"{p.prog}: error: {e}\n")
    mapper = TitleMapper(catalog, popularity)

    if a.mapping_only:
        stats = {ds: {part: prepare(raw[ds, part], mapper)[1] for part in parts} for ds in datasets}
        print(json.dumps(stats, indent=2, ensure_ascii=False))
        return stats

    prepared = {}
    for ds in datasets:
        samples, stats = prepare(raw[ds, "dev"], mapper)
        chosen = fixed_subset(samples, a.limit)
        prepared[ds] = (samples, chosen, stats)

    if a.export_batch:
        a.export_batch.parent.mkdir(parents=True, exist_ok=True)
        with open(a.export_batch, "w", encoding="utf-8") as f:
            for ds in datasets:
                for s in prepared[ds][1]:
                    f.write(json.dumps(batch_conversation(s.sample), ensure_ascii=False) + "\n")
        n = sum(len(prepared[ds][1]) for ds in datasets)
        print(f"wrote {n} conversations to {a.export_batch} (dialog.batch input; run it with --k {K})",
              file=sys.stderr)
        return {"exported": n, "path": str(a.export_batch)}

    if "unisrec" in names and res.unisrec is None:
        p.exit(2, f"{p.prog}: error: the artefacts hold no UniSRec model: python -m training.build --dataset "
                  f"{a.dataset} --artifacts {a.artifacts} --unisrec\n")
    from dialog.manager import build_manager
    weights = ({"full": a.weights} if "full" in names else {}) | {name: str(path) for name, path in variants.items()}
    managers = {name: build_manager(res, weights=w, llm_understanding=False) for name, w in weights.items()}
    manager = managers.get("full")
    outside_lists = {name: read_predictions(path, catalog, name) for name, path in outside.items()}

    man = (res.manifest if res is not None else None) or {}
    reports = {}
    for ds in datasets:
        samples, chosen, stats = prepared[ds]
        systems = {}
        for name in names + list(variants):
            t0 = time.perf_counter()
            if name == "popularity":
                lists, n_err = rank_popularity(res, chosen, K, progress)
            elif name == "text":
                lists, n_err = rank_text(res, chosen, K, progress)
            elif name in ("sasrec", "unisrec"):
                lists, n_err = rank_sequential(res.cf if name == "sasrec" else res.unisrec, chosen, K, progress, name)
            else:
                lists, n_err = rank_full(managers[name], chosen, K, progress)
            systems[name] = (lists, n_err, time.perf_counter() - t0)
        for name, (lists, errored, _) in outside_lists.items():
            systems[name] = (lists, sum(x.id in errored for x in chosen), None)
        report = {"dataset": ds, "split": "dev", "n_samples": stats["samples"],
                  "n_mapped": stats["samples_with_a_mapped_label"], "n_eligible": len(samples),
                  "n_scored": len(chosen), "limit": a.limit, "k": K, "systems": {}, "mapping": stats,
                  "input_errors": broken.get(ds, 0)}
        per_sample = {name: score(lists, chosen) for name, (lists, _, _) in systems.items()}
        paired = paired_vs(per_sample, "full", "recall@10", a.n_boot, a.seed)
        for name, (lists, n_err, wall) in systems.items():
            s = summarise(per_sample[name], a.n_boot, a.seed)
            if name in paired:
                s["full_minus_this"] = paired[name]
            s.update({"errors": n_err, "missing": sum(x.id not in lists for x in chosen),
                      "mean_list_len": round(float(np.mean([len(lists.get(x.id, [])) for x in chosen])), 2)
                      if chosen else 0.0,
                      "s_per_sample": round(wall / max(len(chosen), 1), 4) if wall is not None else None})
            report["systems"][name] = s
        notes = [f"Artefacts: {Path(a.artifacts) / a.dataset} (resources config {man.get('config')!r}, built "
                 f"{man.get('created')})" + (" - a SMOKE build: numbers are for checking the pipeline only"
                                             if man.get("config") == "smoke" else "") + ".",
                 f"Data: {a.crs_dir or crs_dir(a.data_dir)} (iEvaLM-CRS processed files); dev part "
                 + ("= ReDial validation dialogs whose id hashes to dev (retrieval/crs_data.py)"
                    if ds == "redial" else "= OpenDialKG validation") + ".",
                 "Context movies (excluded from the labels, and from the popularity and text lists): the mapped "
                 "`entity` names of the sample, plus labels named verbatim with their year in the context.",
                 f"text: the latest turns of both sides, up to {TEXT_CHARS} characters, MiniLM against the item "
                 "text index." if "text" in names else None,
                 "full: rule-based understanding, template replies (not scored), ranker weights "
                 f"{manager.tools.ranker.weights.meta.get('source', 'shipped file')}; the turns replayed by "
                 "dialog.batch.recommend_conversation, top 50." if manager is not None else None,
                 "sasrec / unisrec: the sequential model alone, the context's mapped movies in order as the "
                 "history." if {"sasrec", "unisrec"} & set(names) else None]
        notes += [f"{name}: full with the ranker weights {path}." for name, path in variants.items()]
        notes += [f"{name}: predictions from {outside[name]} ({c['lines']} lines, {c['broken_lines']} broken, "
                  f"{c['error_lines']} with an error, {c['unknown_items']} items not in the catalogue)."
                  for name, (_, _, c) in outside_lists.items()]
        report["run"] = run.finish(catalogue=a.dataset, artifacts=str(Path(a.artifacts) / a.dataset),
                                   notes=[n for n in notes if n])
        write_report(a.out, f"crs_{ds}", report, markdown, echo=True)
        reports[ds] = report
    return reports


if __name__ == "__main__":
    main()
