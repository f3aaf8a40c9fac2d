"""Benchmark: the movie titles and genres the rules reader finds in real seekers' messages, against
the ``entity`` annotations of the CRS data sets (ReDial, OpenDialKG; ``retrieval/crs_data.py``).

    python -m dialog.eval.bench_mentions                       # both data sets, fit and dev parts
    python -m dialog.eval.bench_mentions --crs redial --parts fit

Per sample, the seeker's last message is read by ``parse_message`` through a ``TitleFinder`` over the
catalogue's ``TitleIndex`` (as ``dialog.manager.build_manager`` builds them, no artefacts needed:
the catalogue and the train popularity come from the data). The labels for that message:

- attribution: an ``entity`` name counts for the message when its title, without a "(year)" and
  normalised as ``retrieval.titles.normalize_title`` does (case, accents, punctuation, a leading
  article), occurs in the normalised message as whole words. The annotations cover the whole
  context, so an entity named only in earlier turns is not a label of the last message.
  A short title needs more (see ``attributed``).
- titles: attributed names that ``TitleMapper`` maps to a catalogue movie (exactly, with the year
  when given). Names it cannot map (not in the catalogue) are no labels, but a catalogue movie the
  reader finds for them is a false positive.
- genres: attributed names that are genre words (the mapper's genre words) and name a catalogue
  genre (``canonical_genre``: "horror", "scary" -> Horror).

Predictions: the catalogue ids of the reader's title mentions (the item, else the first candidate,
as the manager takes them) and its genres to include or exclude. Precision and recall are micro
averages over all messages (each distinct id per message counted once); ``examples`` lists a few
false positives and misses. Entity names that are neither mapped movies nor genre words are counted
("other", people-like when they look like a personal name of two or three capitalised words).

People (with the people index, ``retrieval.people``, built from the data like the catalogue):
labels = the attributed people-like "other" names of the message; predictions = the people
``dialog.understand.people.read_people`` finds (which also drops title readings inside a name, as
the manager does); names compared by ``retrieval.people.name_key``. A found person not annotated
is a false positive; an annotated one the index does not know is a miss (coverage counts).

Parts: ReDial fit/dev = the two halves of its validation file; OpenDialKG fit = its train file,
dev = its validation file (tune on fit only). Writes ``<out>/mentions_<dataset>.{json,md}``.
"""
from __future__ import annotations

import argparse
import re
import unicodedata
from collections import Counter

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from dialog.understand import TitleFinder, parse_message
from dialog.understand.lexicon import canonical_genre
from dialog.understand.people import read_people
from retrieval.cli import add_data_args
from retrieval.crs_data import CRS_DATASETS, PARTS, TitleMapper, fixed_subset, load_crs
from retrieval.eval.report import Run, md_table, run_line, write_report
from retrieval.people import PeopleIndex, name_key
from retrieval.titles import TitleIndex, normalize_title

_YEAR_SUFFIX = re.compile(r"\s*\(\d{4}\)\s*$")
_PERSON = re.compile(r"^[A-Z][a-z'.-]+(?: [A-Z][a-z'.-]+){1,2}$")
N_EXAMPLES = 15


def _plain(text: str) -> str:
    """Lower case, no accents, punctuation to spaces ("&" as "and"); the article is kept."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower().replace("&", " and ")
    return re.sub(r"\s+", " ", re.sub(r"[^a-z0-9 ]+", " ", text)).strip()


def attributed(entity: str, message: str) -> bool:
    """Does the entity's title (no year, normalised) occur in the message as whole words?

    A short title (one word of at most four letters, or only stop words: "It", "Up", "Them") counts
    only when written as annotated with its year ("It (2017)"), or, for a name without a year, with
    its capitals and not opening a sentence; otherwise every "it" in a message would be a label."""
    title = _YEAR_SUFFIX.sub("", entity).strip()
    key = normalize_title(title)
    if not key or f" {key} " not in f" {_plain(message)} ":
        return False
    words = key.split()
    if not ((len(words) == 1 and len(key) <= 4) or all(w in ENGLISH_STOP_WORDS for w in words)):
        return True
    if title != entity.strip():
        return entity.strip() in message
    return any(not re.search(r"(^|[.!?]\s*)$", message[:m.start()])
               for m in re.finditer(r"(?<!\w)%s(?!\w)" % re.escape(title), message))


def message_labels(sample, mapper: TitleMapper, genres: list[str]) -> tuple[set[int], set[str], list[str]]:
    """(catalogue ids, catalogue genres, other names) the entities attribute to the last message."""
    msg = sample.context[-1]
    ids, found_genres, other = set(), set(), []
    for name in dict.fromkeys(sample.entity):
        if not attributed(name, msg):
            continue
        key = normalize_title(_YEAR_SUFFIX.sub("", name))
        if key in mapper.genres:
            g = canonical_genre(key, genres)
            if g is not None:
                found_genres.add(g)
            continue
        m = mapper.map(name)
        if m.item_id is not None:
            ids.add(m.item_id)
        else:
            other.append(name)
    return ids, found_genres, other


def predictions(text: str, finder: TitleFinder, genres: list[str], max_year: int, people=None
                ) -> tuple[set[int], set[str], set[str]]:
    u = parse_message(text, finder, genres, 0, max_year)
    if people is not None:
        read_people(u, text, people)
    ids = {m.item_id if m.item_id is not None else m.candidates[0] for m in u.titles
           if m.item_id is not None or m.candidates}
    return ids, set(u.include_genres) | set(u.exclude_genres), {name_key(n) for n in u.people}


def _pr(tp: int, n_pred: int, n_gold: int) -> dict:
    return {"precision": round(tp / n_pred, 4) if n_pred else None,
            "recall": round(tp / n_gold, 4) if n_gold else None,
            "tp": tp, "predicted": n_pred, "labels": n_gold}


def measure(samples, finder: TitleFinder, mapper: TitleMapper, catalog, max_year: int, people=None) -> dict:
    """Precision / recall of title ids, genres (and people, given an index) on the last messages."""
    genres = list(catalog.genres)
    t = Counter()
    g = Counter()
    pp = Counter()
    ent = Counter()
    fps, misses = Counter(), Counter()
    for s in samples:
        msg = s.context[-1]
        gold_ids, gold_genres, other = message_labels(s, mapper, genres)
        pred_ids, pred_genres, pred_people = predictions(msg, finder, genres, max_year, people)
        gold_people = {name_key(n) for n in other if _PERSON.match(n.strip())}
        pp["tp"] += len(gold_people & pred_people)
        pp["pred"] += len(pred_people)
        pp["gold"] += len(gold_people)
        t["tp"] += len(gold_ids & pred_ids)
        t["pred"] += len(pred_ids)
        t["gold"] += len(gold_ids)
        g["tp"] += len(gold_genres & pred_genres)
        g["pred"] += len(pred_genres)
        g["gold"] += len(gold_genres)
        for i in pred_ids - gold_ids:
            fps[f"{catalog.display(i)} <- {msg[:120]!r}"] += 1
        for i in gold_ids - pred_ids:
            misses[f"{catalog.display(i)} <- {msg[:120]!r}"] += 1
        for name in dict.fromkeys(s.entity):
            key = normalize_title(_YEAR_SUFFIX.sub("", name))
            if key in mapper.genres:
                ent["genre"] += 1
            elif mapper.map(name).item_id is not None:
                ent["movie (mapped)"] += 1
            else:
                ent["other"] += 1
                ent["other, people-like"] += bool(_PERSON.match(name.strip()))
        ent["other in the last message"] += len(other)
    return {"messages": len(samples),
            "titles": _pr(t["tp"], t["pred"], t["gold"]),
            "genres": _pr(g["tp"], g["pred"], g["gold"]),
            **({"people": _pr(pp["tp"], pp["pred"], pp["gold"])} if people is not None else {}),
            "entities": dict(ent),
            "examples": {"false_positives": [k for k, _ in fps.most_common(N_EXAMPLES)],
                         "misses": [k for k, _ in misses.most_common(N_EXAMPLES)]}}


def markdown(report: dict) -> str:
    rows = []
    for part, r in report["parts"].items():
        for what in ("titles", "genres", "people"):
            if what not in r:
                continue
            x = r[what]
            rows.append([part, what, r["messages"], x["labels"], x["predicted"], x["tp"],
                         "-" if x["precision"] is None else f"{x['precision']:.3f}",
                         "-" if x["recall"] is None else f"{x['recall']:.3f}"])
    lines = [f"# Title, genre and people mentions on {report['dataset']} seekers' last messages", "",
             run_line(report["run"]), "",
             *md_table(["part", "what", "messages", "labels", "predicted", "correct", "precision", "recall"], rows),
             "", "Entity names per part (distinct per sample): " + "; ".join(
                 f"{part}: " + ", ".join(f"{k} {v}" for k, v in r["entities"].items())
                 for part, r in report["parts"].items()), ""]
    for part, r in report["parts"].items():
        for kind in ("false_positives", "misses"):
            lines += [f"## {part}: {kind.replace('_', ' ')} (most frequent first)", ""]
            lines += [f"- {e}" for e in r["examples"][kind]] or ["- none"]
            lines.append("")
    lines += ["How entities are attributed to a message and what is counted: `dialog/eval/bench_mentions.py`."]
    return "\n".join(lines) + "\n"




def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m dialog.eval.bench_mentions", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--crs", default=",".join(CRS_DATASETS), help="CRS data sets, comma-separated")
    p.add_argument("--parts", default=",".join(PARTS), help="parts, comma-separated (default fit,dev)")
    p.add_argument("--crs-dir", default=None, help="the folder holding redial/ and opendialkg/")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="at most N samples per part (a fixed pseudo-random subset by sha256 of the id)")
    p.add_argument("--no-people", action="store_true", help="without the people index (titles as before it)")
    add_data_args(p, artifacts=False, reports=True)
    a = p.parse_args(argv)
    datasets = [d for d in a.crs.split(",") if d]
    parts = [x for x in a.parts.split(",") if x]
    if any(d not in CRS_DATASETS for d in datasets) or any(x not in PARTS for x in parts):
        p.error(f"--crs from {CRS_DATASETS}, --parts from {PARTS}")
    run = Run.for_module("dialog.eval.bench_mentions", argv)
    from retrieval.catalog import build_catalog
    from retrieval.data import load_dataset
    from retrieval.splits import last_positive_holdout
    raw = load_dataset(a.dataset, a.data_dir)
    catalog = build_catalog(raw)
    popularity = last_positive_holdout(raw, catalog).popularity()
    finder = TitleFinder(TitleIndex(catalog, popularity))
    mapper = TitleMapper(catalog, popularity)
    max_year = int(catalog.items.year.max())
    people = None if a.no_people else PeopleIndex.build(catalog, raw.data_dir / "movie-descriptions")
    reports = {}
    for ds in datasets:
        report = {"dataset": ds, "catalogue": a.dataset, "parts": {}}
        for part in parts:
            samples = load_crs(ds, part, a.data_dir, root=a.crs_dir)
            samples = fixed_subset(samples, a.limit)
            report["parts"][part] = measure(samples, finder, mapper, catalog, max_year, people)
        if people is not None:
            report["people_index"] = people.coverage()
        report["run"] = run.finish(catalogue=a.dataset, limit=a.limit)
        write_report(a.out, f"mentions_{ds}", report, markdown, echo=True)
        reports[ds] = report
    return reports


if __name__ == "__main__":
    main()
