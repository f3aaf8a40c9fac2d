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

Readers (``--reader``): ``rules`` (the default, ``parse_message``) or ``llm`` (``--llm NAME``: the
manager's LLM path, ``LLMUnderstander``: JSON, schema check, one repair, the rules as fallback; then
``read_people`` as the manager does). An LLM run reads every sample with both readers, so the two
are compared on the same messages, and writes ``mentions_<dataset>_llm.{json,md}`` with each
reader's numbers, the LLM's outcome counts (accepted / repaired / fell back) and its seconds per
message. It costs seconds a message on a CPU: use ``--limit`` (e.g. ``--parts dev --limit 150``).
"""
from __future__ import annotations

import argparse
import re
import time
import unicodedata
from collections import Counter

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from dialog.understand import LLMUnderstander, TitleFinder, Understanding, parse_message
from dialog.understand.lexicon import canonical_genre
from dialog.understand.people import read_people
from ilm.runtime.cli import add_runtime_args, runtime_config
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


def rules_reader(finder: TitleFinder, genres: list[str], max_year: int):
    """``text -> Understanding`` by the rules."""
    return lambda text: parse_message(text, finder, genres, 0, max_year)


def llm_reader(understander: LLMUnderstander):
    """``text -> Understanding`` by the LLM path (no suggestions were shown before)."""
    return lambda text: understander.understand(text, [])[0]


def predictions(text: str, read, people=None) -> tuple[set[int], set[str], set[str], Understanding]:
    """(title ids, genres, people keys, the understanding) one reader finds in a message."""
    u = read(text)
    if people is not None:
        read_people(u, text, people)
    ids = {m.item_id if m.item_id is not None else m.candidates[0] for m in u.titles
           if m.item_id is not None or m.candidates}
    return ids, set(u.include_genres) | set(u.exclude_genres), {name_key(n) for n in u.people}, u


def _pr(tp: int, n_pred: int, n_gold: int) -> dict:
    return {"precision": round(tp / n_pred, 4) if n_pred else None,
            "recall": round(tp / n_gold, 4) if n_gold else None,
            "tp": tp, "predicted": n_pred, "labels": n_gold}


def measure(samples, read, mapper: TitleMapper, catalog, people=None, progress: str | None = None) -> dict:
    """Precision / recall of title ids, genres (and people, given an index) on the last messages.

    Args:
        read: ``text -> Understanding`` (``rules_reader`` / ``llm_reader``).
        progress: print a line every 10 messages with this prefix (slow readers); None: quiet.
    """
    genres = list(catalog.genres)
    sources, t_read = Counter(), 0.0
    t = Counter()
    g = Counter()
    pp = Counter()
    ent = Counter()
    fps, misses = Counter(), Counter()
    for n, s in enumerate(samples):
        msg = s.context[-1]
        gold_ids, gold_genres, other = message_labels(s, mapper, genres)
        t0 = time.perf_counter()
        pred_ids, pred_genres, pred_people, u = predictions(msg, read, people)
        t_read += time.perf_counter() - t0
        sources[u.source] += 1
        if progress and (n + 1) % 10 == 0:
            print(f"{progress}: {n + 1}/{len(samples)} messages, {t_read / (n + 1):.2f} s each", flush=True)
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
            "sources": dict(sources), "s_per_message": round(t_read / max(len(samples), 1), 4),
            "entities": dict(ent),
            "examples": {"false_positives": [k for k, _ in fps.most_common(N_EXAMPLES)],
                         "misses": [k for k, _ in misses.most_common(N_EXAMPLES)]}}


def markdown(report: dict) -> str:
    readers = report.get("readers") or {"rules": report["parts"]}
    rows = []
    for reader, parts in readers.items():
        for part, r in parts.items():
            for what in ("titles", "genres", "people"):
                if what not in r:
                    continue
                x = r[what]
                rows.append([reader, part, what, r["messages"], x["labels"], x["predicted"], x["tp"],
                             "-" if x["precision"] is None else f"{x['precision']:.3f}",
                             "-" if x["recall"] is None else f"{x['recall']:.3f}"])
    llm = report.get("llm")
    lines = [f"# Title, genre and people mentions on {report['dataset']} seekers' last messages", "",
             run_line(report["run"]), ""]
    if llm:
        lines += [f"Readers: the rules and the LLM path ({llm}) on the same messages"
                  + (f" ({report['limit']} per part, the first by sha256 of their id)" if report.get("limit") else "")
                  + ". LLM outcomes (llm = JSON accepted at the first try, llm-repaired = after one repair, "
                    "rules = fell back) and seconds per message: "
                  + "; ".join(f"{part}: {r['sources']}, {r['s_per_message']} s" for part, r in readers["llm"].items()),
                  ""]
    lines += [*md_table(["reader", "part", "what", "messages", "labels", "predicted", "correct", "precision",
                         "recall"], rows),
              "", "Entity names per part (distinct per sample): " + "; ".join(
                  f"{part}: " + ", ".join(f"{k} {v}" for k, v in r["entities"].items())
                  for part, r in next(iter(readers.values())).items()), ""]
    for reader, parts in readers.items():
        for part, r in parts.items():
            for kind in ("false_positives", "misses"):
                lines += [f"## {reader}, {part}: {kind.replace('_', ' ')} (most frequent first)", ""]
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
    p.add_argument("--reader", default="rules", choices=("rules", "llm"),
                   help="rules (default), or llm: the LLM path and the rules on the same messages (needs --llm)")
    p.add_argument("--llm", default=None, help="the LLM of the llm reader, e.g. qwen2.5-coder-1.5b")
    add_runtime_args(p)
    add_data_args(p, artifacts=False, reports=True)
    a = p.parse_args(argv)
    if (a.reader == "llm") != bool(a.llm):
        p.error("--reader llm needs --llm NAME, and --llm is only read with --reader llm")
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
    readers = {"rules": rules_reader(finder, list(catalog.genres), max_year)}
    llm_name = None
    if a.reader == "llm":
        from dialog.llm import LocalChatModel
        chat = LocalChatModel.load(a.llm, runtime_config(a))
        und = LLMUnderstander(chat, finder, list(catalog.genres))
        und.understand("Hello!", [])        # warm-up (the system prompt's cache): not timed
        readers["llm"] = llm_reader(und)
        llm_name = f"{a.llm} ({chat.backend})"
    reports = {}
    for ds in datasets:
        report = {"dataset": ds, "catalogue": a.dataset, "parts": {}}
        by_reader = {name: {} for name in readers}
        for part in parts:
            samples = load_crs(ds, part, a.data_dir, root=a.crs_dir)
            samples = fixed_subset(samples, a.limit)
            for name, read in readers.items():
                by_reader[name][part] = measure(samples, read, mapper, catalog, people,
                                                progress=f"{ds} {part} {name}" if name == "llm" else None)
        report["parts"] = by_reader["rules"]
        if llm_name:
            report |= {"readers": by_reader, "llm": llm_name, "limit": a.limit}
        if people is not None:
            report["people_index"] = people.coverage()
        report["run"] = run.finish(catalogue=a.dataset, limit=a.limit, reader=a.reader)
        write_report(a.out, f"mentions_{ds}" + ("_llm" if llm_name else ""), report, markdown, echo=True)
        reports[ds] = report
    return reports


if __name__ == "__main__":
    main()
