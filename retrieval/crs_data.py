"""The CRS benchmark's data: real conversations (ReDial, OpenDialKG) in the iEvaLM-CRS format, their
fit and dev parts, the mapping of the movies they name to the catalogue, and the protocol that
turns a conversation into a scored sample. ``dialog/eval/crs.py`` runs the systems on them;
``retrieval/comention.py`` counts which movies the fit parts name together (a ranker feature).

Files (read from ``<data-dir>/crs``, see ``../shared/data/crs/PROVENANCE.md``; never copied):

  part  ReDial                                       OpenDialKG
  fit   valid_data_processed.jsonl, half the dialogs  train_data_processed.jsonl
  dev   valid_data_processed.jsonl, the other half    valid_data_processed.jsonl

One sample per recommender turn: ``{"dialog_id", "turn_id", "context": [turns, the last one the
seeker's], "entity": [names annotated in the context], "rec": [the movies recommended next: the
labels], "resp": "..."}``. The ReDial split is by dialog, so both parts never share a conversation:
a dialog is in the fit part when ``sha256(f"{SPLIT_SALT}:{dialog_id}")``, read as a number in [0, 1)
from its first 8 hex digits, is below 0.5 (491 of ReDial validation's 985 dialogs). It depends on
the dialog id alone, never on the order of the file.

Mapping (``TitleMapper``): names are normalised as ``retrieval.titles.normalize_title`` does (case,
accents, punctuation, "&", a leading article) and matched exactly, never fuzzily, against every
catalogue title and its alternative titles (the original-language names MovieLens keeps in
parentheses: "Le Fabuleux destin d'Amélie Poulain"); a second key without spaces absorbs spacing
("WALL-E" / "WALL·E"). A name with a year ("The Shining (1980)", ReDial) needs the same year; if
none has it, a year one off (festival vs. release year), then the main title before a subtitle
with the same year ("Star Wars (1977)" = "Star Wars: Episode IV - A New Hope"). A name without a
year (OpenDialKG) is never a genre word ("romance", "war": the genre, not the film of that name)
and takes the most popular movie with that exact title; it never maps through a main title
("Star Wars", "Bridget Jones": a franchise or a guess). Equal popularity among the best candidates
is "ambiguous". Why a name does not map is counted: ``UNMAPPED``.

Protocol (He et al., CIKM 2023, as in PROVENANCE.md; ``prepare``): the catalogue movies named in
the context are the mapped ``entity`` names, plus any label whose "Title (year)" appears verbatim
in the context. Labels are the mapped ``rec`` names minus those context movies; a sample with no
label left is dropped.
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retrieval.catalog import Catalog
from retrieval.titles import normalize_title

CRS_DATASETS = ("redial", "opendialkg")
PARTS = ("fit", "dev")
FILES = {("redial", "fit"): "redial/valid_data_processed.jsonl",
         ("redial", "dev"): "redial/valid_data_processed.jsonl",
         ("opendialkg", "fit"): "opendialkg/train_data_processed.jsonl",
         ("opendialkg", "dev"): "opendialkg/valid_data_processed.jsonl"}
SPLIT_SALT = "ilmrec-crs-redial-v1"   # changing it changes which ReDial dialogs are dev
YEAR_TOLERANCE = 1

# How a name mapped (``MAPPED``) or why it did not (``UNMAPPED``), as counted in the report.
MAPPED = ("title + year", f"title + year ±{YEAR_TOLERANCE}", "main title + year", "title",
          "title, most popular of several")
MAIN_TITLE_ONLY = "no year, only the main title of longer titles"
NOT_A_MOVIE = "not a movie (a genre word)"
BOOK_OR_TV = "probably not a movie (book or TV words in the conversation)"
UNMAPPED = ("not in catalogue", "title in catalogue, other year", "released after the catalogue",
            "ambiguous", MAIN_TITLE_ONLY, NOT_A_MOVIE, BOOK_OR_TV, "no Latin letters or digits")

_NAME_YEAR = re.compile(r"^(.*\S)\s*\((\d{4})\)\s*$")
_SUBTITLE = re.compile(r":| - ")
# Words that say the conversation is about books or TV; unmapped names there are likely not films.
# Genre words beyond the catalogue's genre names (ReDial's and OpenDialKG's annotated entities).
GENRE_WORDS = {"family", "scary", "sport", "sports", "history", "historical", "science fiction", "romantic comedy",
               "animated", "superhero", "biography", "music", "kids", "christmas", "war", "romance"}
MIXED_DOMAINS = ("opendialkg",)     # data sets whose labels include books and other non-films
_BOOK_TV_WORDS = re.compile(r"\b(books?|novels?|authors?|wrote|written|writer|read|reading|poems?|poetry|"
                            r"tv show|tv series|television|sitcom|episodes?)\b", re.I)


class CRSDataError(RuntimeError):
    """The CRS data is missing or unreadable; the message names the file and what to do."""


@dataclass(frozen=True)
class CRSSample:
    """One recommender turn of a conversation. ``id`` is ``<dataset>/<dialog_id>/<turn_id>``."""
    dataset: str
    dialog_id: str
    turn_id: int
    context: tuple[str, ...]
    entity: tuple[str, ...]
    rec: tuple[str, ...]
    resp: str = ""

    @property
    def id(self) -> str:
        return f"{self.dataset}/{self.dialog_id}/{self.turn_id}"


def fixed_subset(samples: list, n: int | None) -> list:
    """At most ``n`` samples, a fixed pseudo-random subset (ordered by sha256 of their id); all when
    ``n`` is None or 0."""
    if not n:
        return list(samples)
    return sorted(samples, key=lambda s: hashlib.sha256(s.id.encode()).hexdigest())[:n]


def about_books_or_tv(sample: CRSSample) -> bool:
    """A sample of a mixed-domain data set whose conversation talks about books or TV (their titles
    are often also films')."""
    return sample.dataset in MIXED_DOMAINS and bool(_BOOK_TV_WORDS.search("\n".join(sample.context) + "\n" + sample.resp))


def split_part(dialog_id) -> str:
    """"fit" or "dev" for a ReDial dialog id (about half each; depends on the id alone)."""
    h = hashlib.sha256(f"{SPLIT_SALT}:{dialog_id}".encode()).hexdigest()
    return "fit" if int(h[:8], 16) / 16 ** 8 < 0.5 else "dev"


def _str_list(obj: dict, key: str) -> tuple[str, ...]:
    v = obj.get(key)
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ValueError(f"'{key}' must be a list of strings")
    return tuple(v)


def parse_sample(line: str, dataset: str) -> CRSSample:
    """One JSONL line -> a sample; ValueError saying what is wrong."""
    obj = json.loads(line)          # json.JSONDecodeError is a ValueError
    if not isinstance(obj, dict):
        raise ValueError("a line must be a JSON object")
    dialog_id, turn_id = obj.get("dialog_id"), obj.get("turn_id")
    if isinstance(dialog_id, bool) or not isinstance(dialog_id, (str, int)) or str(dialog_id) == "":
        raise ValueError("'dialog_id' must be a string or an integer")
    if isinstance(turn_id, bool) or not isinstance(turn_id, int):
        raise ValueError("'turn_id' must be an integer")
    context = _str_list(obj, "context")
    if not context:
        raise ValueError("'context' is empty (the last turn must be the seeker's)")
    resp = obj.get("resp", "")
    return CRSSample(dataset, str(dialog_id), turn_id, context, _str_list(obj, "entity"), _str_list(obj, "rec"),
                     resp if isinstance(resp, str) else "")


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def read_samples(path, dataset: str, on_error: Callable[[str], None] = _stderr) -> list[CRSSample]:
    """Every well-formed line of an iEvaLM JSONL file; each broken line is one ``on_error`` message
    ("<path>:<line>: <what>") and is skipped. Raises ``CRSDataError`` when the file is missing or
    holds no well-formed line."""
    path = Path(path)
    if not path.is_file():
        raise CRSDataError(f"{dataset}: expected file {path} is missing")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CRSDataError(f"{path} cannot be read as UTF-8 text: {e}") from None
    out, n_lines = [], 0
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        n_lines += 1
        try:
            out.append(parse_sample(line, dataset))
        except ValueError as e:
            on_error(f"{path}:{n}: {str(e)[:200]}")
    if not out:
        raise CRSDataError(f"{path} holds no sample in the iEvaLM format ({n_lines} non-empty lines, none "
                           "well-formed); see ../shared/data/crs/PROVENANCE.md")
    return out


def crs_dir(data_dir=None) -> Path:
    """``<data root>/crs`` (the data root as ``retrieval.data.resolve_data_dir`` finds it)."""
    from retrieval.data import resolve_data_dir
    return resolve_data_dir(data_dir) / "crs"


def load_crs(dataset: str, part: str, data_dir=None, *, root=None,
             on_error: Callable[[str], None] = _stderr) -> list[CRSSample]:
    """The samples of one part of a CRS data set, in file order.

    Args:
        dataset: "redial" or "opendialkg".
        part: "fit" or "dev" (see the module docstring).
        data_dir: the data root (default ``$ILMREC_DATA_DIR``, else ``../shared/data``); ``root``
            names the ``crs`` folder itself instead.
        on_error: gets one message per broken line.
    """
    if dataset not in CRS_DATASETS:
        raise ValueError(f"unknown CRS data set {dataset!r}; known: {', '.join(CRS_DATASETS)}")
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; known: {', '.join(PARTS)}")
    base = Path(root) if root is not None else crs_dir(data_dir)
    if not base.is_dir():
        raise CRSDataError(f"no CRS data folder {base}: point --data-dir (or $ILMREC_DATA_DIR) at a data root "
                           "holding crs/redial and crs/opendialkg, or --crs-dir at the crs folder itself "
                           "(see ../shared/data/crs/PROVENANCE.md)")
    samples = read_samples(base / FILES[(dataset, part)], dataset, on_error)
    if dataset == "redial":
        samples = [s for s in samples if split_part(s.dialog_id) == part]
    return samples


def batch_conversation(sample: CRSSample) -> dict:
    """The sample as one input line of ``python -m dialog.batch``: roles alternate back from the
    last turn (the seeker's = "user"); empty turns are left out."""
    n = len(sample.context)
    turns = [{"role": "user" if (n - 1 - i) % 2 == 0 else "assistant", "text": t}
             for i, t in enumerate(sample.context) if t.strip()]
    return {"id": sample.id, "turns": turns}


@dataclass(frozen=True)
class Mapping:
    """A name's catalogue movie (``item_id`` None when unmapped) and the rule or reason (``how``)."""
    name: str
    item_id: int | None
    how: str


def _main_title(name: str) -> str:
    return _SUBTITLE.split(name, maxsplit=1)[0]


class TitleMapper:
    """Exact, normalised title (+ year) mapping of free names to catalogue movies.

    Args:
        catalog: the catalogue (titles, alternative titles, years).
        popularity: (N,) train interaction counts; decides among same-title movies.
    """

    def __init__(self, catalog: Catalog, popularity: np.ndarray):
        items = catalog.items
        self.popularity = np.asarray(popularity, dtype=np.float64)
        self.years = items["year"].values
        self.max_year = int(np.nanmax(self.years)) if np.isfinite(self.years).any() else None
        self.genres = {normalize_title(g) for g in catalog.genres} | GENRE_WORDS
        self._full, self._compact, self._main = defaultdict(set), defaultdict(set), defaultdict(set)
        self._cache: dict[str, Mapping] = {}
        for item_id, title, alts in zip(items.item_id, items.title, items.alt_titles):
            for name in (title, *alts):
                key = normalize_title(name)
                if not key:
                    continue
                self._full[key].add(int(item_id))
                self._compact[key.replace(" ", "")].add(int(item_id))
                main = normalize_title(_main_title(name))
                if main and main != key:
                    self._main[main].add(int(item_id))

    def _pick(self, ids, how: str) -> tuple[int | None, str]:
        """The most popular of ``ids``; "ambiguous" when the best two are equally popular."""
        ranked = sorted(ids, key=lambda i: (-self.popularity[i], i))
        if len(ranked) > 1 and self.popularity[ranked[0]] == self.popularity[ranked[1]]:
            return None, "ambiguous"
        if how == "title" and len(ranked) > 1:
            how = "title, most popular of several"
        return ranked[0], how

    def _with_year(self, ids, year: int, tolerance: int) -> list[int]:
        return [i for i in ids if self.years[i] == self.years[i] and abs(int(self.years[i]) - year) <= tolerance]

    def map(self, name: str) -> Mapping:
        """Map one name ("The Shining (1980)", "Home Alone")."""
        if name not in self._cache:
            self._cache[name] = self._map(name)
        return self._cache[name]

    def _map(self, name: str) -> Mapping:
        m = _NAME_YEAR.match(name.strip())
        title, year = (m.group(1), int(m.group(2))) if m else (name.strip(), None)
        key = normalize_title(title)
        if not key:
            return Mapping(name, None, "no Latin letters or digits")
        ids = self._full.get(key) or self._compact.get(key.replace(" ", ""), set())
        if year is None:
            if key in self.genres:      # "romance", "war", "family": the genre, not the film of that name
                return Mapping(name, None, NOT_A_MOVIE)
            if ids:
                return Mapping(name, *self._pick(ids, "title"))
            if self._main.get(key):
                return Mapping(name, None, MAIN_TITLE_ONLY)
            return Mapping(name, None, "not in catalogue")
        for tolerance, how in ((0, "title + year"), (YEAR_TOLERANCE, f"title + year ±{YEAR_TOLERANCE}")):
            hit = self._with_year(ids, year, tolerance)
            if hit:
                return Mapping(name, *self._pick(hit, how))
        hit = self._with_year(self._main.get(key, set()), year, 0)
        if hit:
            return Mapping(name, *self._pick(hit, "main title + year"))
        if ids:
            return Mapping(name, None, "title in catalogue, other year")
        if self.max_year is not None and year > self.max_year:
            return Mapping(name, None, "released after the catalogue")
        return Mapping(name, None, "not in catalogue")


@dataclass(frozen=True)
class EvalSample:
    """A sample as scored: ``labels`` = mapped recommended movies not named in the context."""
    sample: CRSSample
    labels: tuple[int, ...]
    context_items: tuple[int, ...]

    @property
    def id(self) -> str:
        return self.sample.id


def context_items(sample: CRSSample, mapper: TitleMapper) -> list[int]:
    """Catalogue movies named in the context: the mapped ``entity`` names."""
    out = []
    for name in sample.entity:
        m = mapper.map(name)
        if m.item_id is not None and m.item_id not in out:
            out.append(m.item_id)
    return out


def prepare(samples: list[CRSSample], mapper: TitleMapper, n_examples: int = 5) -> tuple[list[EvalSample], dict]:
    """Apply the protocol: map labels and context movies, drop context movies from the labels,
    drop samples with no label left.

    Returns:
        (the scored samples in input order, the mapping statistics for the report).
    """
    mapped_by, unmapped_by, examples = Counter(), Counter(), defaultdict(Counter)
    n_labels = n_with_label = in_context = all_in_context = 0
    n_entities = n_entities_mapped = 0
    out = []
    for s in samples:
        ctx = context_items(s, mapper)
        n_entities += len(s.entity)
        n_entities_mapped += sum(mapper.map(e).item_id is not None for e in s.entity)
        text = "\n".join(s.context)
        book_tv = about_books_or_tv(s)
        labels = []
        for name in s.rec:
            n_labels += 1
            m = mapper.map(name)
            if m.item_id is None:
                reason = BOOK_OR_TV if m.how == "not in catalogue" and book_tv else m.how
                unmapped_by[reason] += 1
                examples[reason][name] += 1
                continue
            mapped_by[m.how] += 1
            verbatim = _NAME_YEAR.match(name.strip()) is not None and name.strip() in text
            if m.item_id in ctx or verbatim:
                in_context += 1
                if m.item_id not in ctx:
                    ctx.append(m.item_id)
            if m.item_id not in labels:
                labels.append(m.item_id)
        if not labels:
            continue
        n_with_label += 1
        left = tuple(i for i in labels if i not in ctx)
        if not left:
            all_in_context += 1
            continue
        out.append(EvalSample(s, left, tuple(ctx)))
    stats = {
        "samples": len(samples),
        "samples_with_a_mapped_label": n_with_label,
        "samples_all_labels_in_context": all_in_context,
        "samples_scored": len(out),
        "labels": n_labels,
        "labels_mapped": sum(mapped_by.values()),
        "labels_named_in_context": in_context,
        "labels_scored": sum(len(e.labels) for e in out),
        "mapped_by": {k: mapped_by[k] for k in MAPPED if mapped_by[k]},
        "unmapped_by": {k: unmapped_by[k] for k in UNMAPPED if unmapped_by[k]},
        "context_entities": n_entities,
        "context_entities_mapped": n_entities_mapped,
        "unmapped_examples": {k: [n for n, _ in examples[k].most_common(n_examples)] for k in UNMAPPED
                              if examples[k]},
    }
    return out, stats


def fit_triples(catalog: Catalog, popularity: np.ndarray, data_dir=None, *, root=None,
                on_error: Callable[[str], None] = _stderr) -> tuple[list, dict]:
    """What the conversation counts are counted from: per sample of the **fit** parts of every CRS
    data set (ReDial fit, OpenDialKG train; the dev parts are never read) the triple
    (``<dataset>/<dialog_id>``, mapped context movies, mapped recommended movies), and the number of
    samples read per data set. OpenDialKG samples that talk about books or TV are left out (their
    titles are often also films'); so are samples with no mapped recommended movie. ([], {}) when
    the CRS folder is missing."""
    base = Path(root) if root is not None else crs_dir(data_dir)
    if not base.is_dir():
        return [], {}
    mapper = TitleMapper(catalog, popularity)
    triples, per_set = [], {}
    for ds in CRS_DATASETS:
        samples = load_crs(ds, "fit", root=base, on_error=on_error)
        per_set[ds] = len(samples)
        for s in samples:
            if about_books_or_tv(s):
                continue            # books and TV shows share titles with films: not counted
            labels = [m.item_id for m in map(mapper.map, s.rec) if m.item_id is not None]
            if labels:
                triples.append((dialog_key(s), context_items(s, mapper), labels))
    return triples, per_set


def dialog_key(sample: CRSSample) -> str:
    """``<dataset>/<dialog_id>``: what the counts and the folds are keyed by."""
    return f"{sample.dataset}/{sample.dialog_id}"


def fit_conversation_stats(catalog: Catalog, popularity: np.ndarray, data_dir=None, *, root=None,
                           on_error: Callable[[str], None] = _stderr):
    """``retrieval.comention.ConversationStats`` counted on ``fit_triples`` (the fit parts only).
    Empty (with a note) when the CRS folder is missing."""
    from retrieval.comention import ConversationStats

    base = Path(root) if root is not None else crs_dir(data_dir)
    if not base.is_dir():
        return ConversationStats.empty(len(catalog), f"no CRS data folder {base}")
    triples, per_set = fit_triples(catalog, popularity, root=base, on_error=on_error)
    return ConversationStats.count(len(catalog), triples,
                                   {"parts": {ds: f"fit ({FILES[(ds, 'fit')]}, {n} samples)" for ds, n in per_set.items()},
                                    "catalogue": catalog.name})
