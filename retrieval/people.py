"""People index: directors and billed cast of catalogue movies, and finding their names in messages.

Sources (under ``<data_dir>/movie-descriptions``, see PROVENANCE.md there):
  clayrs:        ``ml-100k_clayrs/items_info.json``, "directors" and "cast" (comma-separated)
  imdb-details:  ``ml-100k_imdb-details/movielens100k_details.csv``, "director" and "cast" (list literals)
  tags:          catalogue tags (``items.tags``) that equal a name already known from the two files

Both files describe the 1,682 ml-100k movies and are joined to the catalogue through the IMDb id
(compared as integers, so leading zeros do not matter); the ml-100k catalogue joins on its own ids.
Coverage is therefore limited to ml-100k-era movies plus movies tagged with a known name: most
of ml-latest-small after 1998 has no people. About 100 imdb-details rows were scraped from the
wrong IMDb page (review shows, episodes); their URL names another title, so they join nothing in
ml-latest-small and are skipped for ml-100k when the URL disagrees with the catalogue's IMDb id.

Matching (``PeopleIndex.find``): text and names are compared token by token after NFKD
normalisation (accents dropped, lower-cased, apostrophes removed: "O'Toole" = "OToole"). A
name matches when all its tokens (at least ``min_name_tokens``) appear in a row, separated only by
spaces, dots or hyphens; a possessive "'s" may follow the last token ("Spielberg's"). A surname
alone ("Spielberg", "Kubrick's") matches only when it is capitalised in the text, has at least
``min_surname_letters`` letters, is the surname of exactly one director, is not a common English
word and is nobody's first name. Overlapping candidates are resolved longest first.
"""
from __future__ import annotations

import ast
import json
import re
import unicodedata
from collections import defaultdict
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import pandas as pd

from retrieval.catalog import Catalog

FORMAT = "retrieval.people"
FORMAT_VERSION = 1
ROLES = ("director", "cast", "tag")
SOURCES = ("clayrs", "imdb-details", "tags")
CLAYRS_FILE = Path("ml-100k_clayrs") / "items_info.json"
DETAILS_FILE = Path("ml-100k_imdb-details") / "movielens100k_details.csv"
_SUFFIXES = frozenset({"jr", "sr", "ii", "iii", "iv"})
_NOT_NAMES = frozenset({"", "nan", "none", "null", "n a"})
_TOKEN_RE = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_NAME_GAP_RE = re.compile(r"[\s.\-‐]+")  # what may separate the tokens of one name in a message
_IMDB_URL_RE = re.compile(r"tt(\d+)")

# Words that are also surnames of directors ("Stone", "Young") or that start sentences; a
# capitalised one on its own is read as the word, not the person. Callers may pass their own set.
COMMON_WORDS = frozenset("""
about above action actor actors after again against along always among animated another anything
around asked awesome badly based became because before began being below better between beyond
black bloody bright bring brown build called carry cartoon cause certain chance check cheap child
children cinema class classic clean clear close comedy comes coming could count cover crime cross
dance daily death doing drama dream drive early earth either empty enjoy enough every family famous
fancy favourite favorite field fields films final first focus force forest found frank fresh front
funny games giant given glass going grand grant great green group guess happy heart heavy horror
house human hunter ideas indie issue kinds known large later laugh learn least leave level light
likes little lives local loved lover lucky major maker makes maybe means might miller money month
moore movie movies music never newer night noble north often older order other owner paper party
peace piece place plain plant plays point power pretty price prince quick quiet quite rather ready
really recent right river rivers rough round scary scene scott seems seven short since small smart
smith sound south space spring stand start state steel still stone story strange street strong
style sweet taste teach thank thanks their theme there these thing things think third those three
thriller thrillers today total touch tough tower trust truth twice under until upper usual value
very watch water weird western where which while white whole whose woman women woods world worse
worst would write wrong years young youth
""".split())


@dataclass
class PeopleConfig:
    """Defaults of the people index."""
    max_cast: int = 8               # billed leads kept per movie (the files list far more)
    min_name_tokens: int = 2        # a full-name mention needs first + last name at least
    min_surname_letters: int = 5    # a surname alone must be at least this long
    reject_first_name_surnames: bool = True  # "Howard" alone is not Ron Howard if someone is called Howard X


@dataclass
class PersonMention:
    """A person found in a message: canonical name, character span of the name (without a
    possessive "'s") and the catalogue items of that person (``PeopleIndex.items`` order)."""
    person: str
    start: int
    end: int
    items: list[int]


@dataclass(frozen=True)
class Credit:
    """One person's part in one movie. ``order``: billing position for cast, listing position
    for directors, 0 for tags. ``sources``: the files it was read from."""
    item_id: int
    role: str
    order: int
    sources: tuple[str, ...]


@lru_cache(maxsize=1 << 16)
def _norm_token(token: str) -> str:
    token = unicodedata.normalize("NFKD", token).encode("ascii", "ignore").decode()
    return token.lower().replace("'", "")


def name_tokens(name: str) -> tuple[str, ...]:
    """Normalised tokens of a person's name: "Tchéky Karyo" -> ("tcheky", "karyo"); "R. Lee Ermey" ->
    ("r", "lee", "ermey"); "Peter O'Toole" -> ("peter", "otoole")."""
    out = (_norm_token(m.group().replace("’", "'")) for m in _TOKEN_RE.finditer(name))
    return tuple(t for t in out if t)


def name_key(name: str) -> str:
    """The key two spellings of one name share: "Amélie Poulain" and "amelie poulain" -> "amelie poulain"."""
    return " ".join(name_tokens(name))


@dataclass(frozen=True)
class _Token:
    norm: str        # normalised, possessive stripped
    start: int
    end: int         # end of the name part (before a possessive "'s")
    capital: bool
    possessive: bool
    joined: bool     # only spaces, dots or hyphens separate it from the previous token


def _tokens(text: str) -> list[_Token]:
    out, prev_end = [], None
    for m in _TOKEN_RE.finditer(text):
        raw, end = m.group(), m.end()
        possessive = len(raw) > 2 and raw[-2] in "'’" and raw[-1] in "sS"
        if possessive:
            raw, end = raw[:-2], end - 2
        joined = prev_end is not None and bool(_NAME_GAP_RE.fullmatch(text[prev_end:m.start()]))
        out.append(_Token(_norm_token(raw.replace("’", "'")), m.start(), end, raw[:1].isupper(), possessive, joined))
        prev_end = m.end()
    return out


def _clean_names(names) -> list[str]:
    """Display names with whitespace collapsed; empty, "nan" and lone suffixes dropped."""
    out = []
    for n in names:
        if not isinstance(n, str):
            continue
        n = re.sub(r"\s+", " ", n).strip()
        key = name_key(n)
        if key not in _NOT_NAMES and key not in _SUFFIXES:
            out.append(n)
    return out


def _literal_list(value) -> list | None:
    """A list literal from the details CSV ("['David Lean']"), or None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    return parsed if isinstance(parsed, list) else None


def _imdb_int(value) -> int | None:
    text = str(value).strip() if value is not None else ""
    return int(text) if text.isdigit() else None


class _Builder:
    """Collects credits from the sources, keeping one credit per (person, item, role)."""

    def __init__(self):
        self.names: dict[str, str] = {}
        self.credits: dict[tuple[str, int, str], tuple[int, set[str]]] = {}

    def add(self, name: str, item_id: int, role: str, order: int, source: str) -> None:
        key = name_key(name)
        self.names.setdefault(key, name)  # the first spelling read (ClayRS keeps apostrophes) is shown
        slot = (key, int(item_id), role)
        if slot in self.credits:
            old_order, sources = self.credits[slot]
            sources.add(source)
            self.credits[slot] = (min(old_order, order), sources)
        else:
            self.credits[slot] = (order, {source})

    def add_movie(self, item_ids, directors, cast, max_cast: int, source: str) -> None:
        for item in item_ids:
            for i, name in enumerate(directors):
                self.add(name, item, "director", i, source)
            for i, name in enumerate(cast[:max_cast]):
                self.add(name, item, "cast", i, source)

    def has_credit(self, key: str, item_id: int) -> bool:
        return any((key, item_id, role) in self.credits for role in ROLES)

    def result(self) -> dict[str, list[Credit]]:
        out: dict[str, list[Credit]] = defaultdict(list)
        for (key, item, role), (order, sources) in sorted(self.credits.items()):
            out[key].append(Credit(item, role, order, tuple(s for s in SOURCES if s in sources)))
        return dict(out)


class PeopleIndex:
    """Directors and cast of catalogue items, looked up by name or found in free text.

    Args:
        names: name key (``name_key``) -> canonical display name.
        credits: name key -> that person's credits.
        n_items: catalogue size (for coverage shares).
        catalog_name: the data set the item ids belong to.
        config: matching defaults.
        common_words: lower-case words a capitalised surname alone must not be (default ``COMMON_WORDS``).
        report: what ``build`` read (files, rows, skips).
    """

    def __init__(self, names: dict[str, str], credits: dict[str, list[Credit]], n_items: int,
                 catalog_name: str, config: PeopleConfig | None = None,
                 common_words: set[str] | frozenset[str] | None = None, report: dict | None = None):
        self.config = config or PeopleConfig()
        self.catalog_name = catalog_name
        self.n_items = int(n_items)
        self.common_words = frozenset(w.lower() for w in (COMMON_WORDS if common_words is None else common_words))
        self.report = report or {}
        self._names = dict(names)
        self._credits = {k: list(v) for k, v in credits.items() if k in self._names}
        self._build_matcher()

    # ---------------------------------------------------------------- building
    @classmethod
    def build(cls, catalog: Catalog, desc_dir: Path, cfg: PeopleConfig | None = None,
              common_words: set[str] | None = None) -> PeopleIndex:
        """Build the index for ``catalog`` from the files under ``desc_dir`` (the movie-descriptions
        folder) and the catalogue's tags. Missing files are skipped (``report`` says which).

        Args:
            catalog: the catalogue whose item ids the index returns.
            desc_dir: folder holding ``ml-100k_clayrs`` and ``ml-100k_imdb-details``.
            cfg: defaults (``PeopleConfig()``).
            common_words: words a surname alone must not be (default ``COMMON_WORDS``).
        """
        cfg = cfg or PeopleConfig()
        desc_dir = Path(desc_dir)
        items = catalog.items
        by_imdb: dict[int, list[int]] = defaultdict(list)
        imdb_of_item: dict[int, int] = {}
        for item, imdb in zip(items["item_id"], items["imdb_id"]):
            if (n := _imdb_int(imdb)) is not None:
                by_imdb[n].append(int(item))
                imdb_of_item[int(item)] = n
        by_ml100k = ({int(m): [int(i)] for m, i in zip(items["movielens_id"], items["item_id"])}
                     if catalog.name == "ml-100k" else {})
        builder = _Builder()
        report = {"clayrs": cls._read_clayrs(desc_dir / CLAYRS_FILE, builder, by_imdb, by_ml100k, cfg),
                  "imdb-details": cls._read_details(desc_dir / DETAILS_FILE, builder, by_imdb, by_ml100k,
                                                    imdb_of_item, cfg)}
        report["tags"] = cls._read_tags(items, builder, cfg)
        return cls(builder.names, builder.result(), len(items), catalog.name, cfg, common_words, report)

    @staticmethod
    def _read_clayrs(path: Path, builder: _Builder, by_imdb, by_ml100k, cfg: PeopleConfig) -> dict:
        rep = {"path": str(path), "read": path.is_file(), "records": 0, "joined": 0}
        if not rep["read"]:
            return rep
        for rec in json.loads(path.read_text(encoding="utf-8")):
            rep["records"] += 1
            if not isinstance(rec, dict):
                continue
            if by_ml100k:
                mid = _imdb_int(rec.get("movielens_id"))
                targets = by_ml100k.get(mid, []) if mid is not None else []
            else:
                imdb = _imdb_int(rec.get("imdb_id"))
                targets = by_imdb.get(imdb, []) if imdb is not None else []
            directors = _clean_names(str(rec.get("directors") or "").split(","))
            cast = _clean_names(str(rec.get("cast") or "").split(","))
            if targets and (directors or cast):
                rep["joined"] += 1
                builder.add_movie(targets, directors, cast, cfg.max_cast, "clayrs")
        return rep

    @staticmethod
    def _read_details(path: Path, builder: _Builder, by_imdb, by_ml100k, imdb_of_item,
                      cfg: PeopleConfig) -> dict:
        rep = {"path": str(path), "read": path.is_file(), "rows": 0, "joined": 0, "bad_rows": 0,
               "url_disagrees": 0}
        if not rep["read"]:
            return rep
        df = pd.read_csv(path, on_bad_lines="skip", dtype=str)
        if not {"movie_id", "movie_url", "director", "cast"} <= set(df.columns):
            rep["read"], rep["error"] = False, "missing columns movie_id, movie_url, director or cast"
            return rep
        for mid, url, director, cast in zip(df["movie_id"], df["movie_url"], df["director"], df["cast"]):
            rep["rows"] += 1
            directors, cast_list = _literal_list(director), _literal_list(cast)
            if directors is None and cast_list is None:
                rep["bad_rows"] += 1
                continue
            m = _IMDB_URL_RE.search(url) if isinstance(url, str) else None
            imdb = int(m.group(1)) if m else None
            if by_ml100k:
                ml_id = _imdb_int(mid)
                targets = by_ml100k.get(ml_id, []) if ml_id is not None else []
                # a row scraped from another IMDb page (a review show, an episode) is not this movie
                if targets and imdb is not None and imdb_of_item.get(targets[0], imdb) != imdb:
                    rep["url_disagrees"] += 1
                    continue
            else:
                targets = by_imdb.get(imdb, []) if imdb is not None else []
            directors, cast_list = _clean_names(directors or []), _clean_names(cast_list or [])
            if targets and (directors or cast_list):
                rep["joined"] += 1
                builder.add_movie(targets, directors, cast_list, cfg.max_cast, "imdb-details")
        return rep

    @staticmethod
    def _read_tags(items: pd.DataFrame, builder: _Builder, cfg: PeopleConfig) -> dict:
        known = {k for k in builder.names if len(k.split()) >= cfg.min_name_tokens}
        rep = {"tags_seen": 0, "credits": 0}
        for item, tags in zip(items["item_id"], items["tags"]):
            for tag in tags if hasattr(tags, "__iter__") and not isinstance(tags, str) else []:
                rep["tags_seen"] += 1
                key = name_key(str(tag))
                if key in known and not builder.has_credit(key, int(item)):
                    builder.add(builder.names[key], int(item), "tag", 0, "tags")
                    rep["credits"] += 1
        return rep

    # ---------------------------------------------------------------- lookup
    def _build_matcher(self) -> None:
        """First token -> candidate names (longest first), and the surname-alone table."""
        by_first: dict[str, list[tuple[tuple[str, ...], str]]] = defaultdict(list)
        self._aliases: dict[str, str] = {}
        for key in self._names:
            toks = tuple(key.split())
            if len(toks) >= self.config.min_name_tokens:
                by_first[toks[0]].append((toks, key))
            if len(toks) > self.config.min_name_tokens and toks[-1] in _SUFFIXES:
                alias = toks[:-1]  # "Robert Downey" for "Robert Downey Jr."
                if " ".join(alias) not in self._names:
                    by_first[alias[0]].append((alias, key))
                    self._aliases[" ".join(alias)] = key
        for cands in by_first.values():
            cands.sort(key=lambda c: -len(c[0]))
        self._by_first = dict(by_first)
        self._first_names = {k.split()[0] for k in self._names if len(k.split()) >= 2}
        surnames: dict[str, set[str]] = defaultdict(set)
        for key, credits in self._credits.items():
            toks = [t for t in key.split() if t not in _SUFFIXES]
            if len(toks) >= 2 and any(c.role == "director" for c in credits):
                surnames[toks[-1]].add(key)
        self._director_surnames = {s: next(iter(keys)) for s, keys in surnames.items() if len(keys) == 1}

    def _resolve(self, name: str) -> str | None:
        key = name_key(name)
        if key in self._names:
            return key
        return self._aliases.get(key)

    @property
    def people(self) -> list[str]:
        """Canonical names of everyone in the index, sorted."""
        return sorted(self._names.values())

    def items(self, name: str, roles=None) -> list[int]:
        """Catalogue item ids of a person (any spelling ``name_key`` maps together; unknown -> []).

        Ordered by the person's best role on each item: directed first, then acted in billing
        order, then tagged, and by item id within each. ``roles`` (e.g. ``{"director"}``) keeps
        only credits in those roles.
        """
        key = self._resolve(name)
        if key is None:
            return []
        rank = {r: i for i, r in enumerate(ROLES)}
        best: dict[int, tuple[int, int]] = {}
        for c in self._credits.get(key, []):
            if roles is not None and c.role not in roles:
                continue
            r = (rank[c.role], c.order if c.role == "cast" else 0)
            best[c.item_id] = min(best.get(c.item_id, r), r)
        return sorted(best, key=lambda i: (*best[i], i))

    def roles(self, name: str, item_id: int) -> list[str]:
        """The roles a person has on one item, in ``ROLES`` order (e.g. ["director", "cast"])."""
        key = self._resolve(name)
        have = {c.role for c in self._credits.get(key, []) if c.item_id == int(item_id)} if key else set()
        return [r for r in ROLES if r in have]

    def credits(self, name: str) -> list[Credit]:
        """Every credit of a person (by item id, then role)."""
        key = self._resolve(name)
        return list(self._credits.get(key, [])) if key else []

    def find(self, text: str, common_words: set[str] | None = None) -> list[PersonMention]:
        """Person names in ``text``, left to right, without overlaps (longest candidate wins).

        Args:
            text: a message.
            common_words: overrides the index's common words for this call.
        Returns:
            one ``PersonMention`` per name found; ``start:end`` spans the name in ``text``.
        """
        common = self.common_words if common_words is None else frozenset(w.lower() for w in common_words)
        toks = _tokens(text)
        cands: list[tuple[int, int, str]] = []  # (n tokens, first token, key)
        for i, tok in enumerate(toks):
            for name_toks, key in self._by_first.get(tok.norm, ()):
                n = len(name_toks)
                if i + n <= len(toks) and all(
                        toks[i + k].norm == name_toks[k] and toks[i + k].joined and not toks[i + k - 1].possessive
                        for k in range(1, n)):
                    cands.append((n, i, key))
                    break  # longest first: the first fit is the longest at this position
            if self._surname_ok(tok, common):
                cands.append((1, i, self._director_surnames[tok.norm]))
        taken = [False] * len(toks)
        chosen = []
        for n, i, key in sorted(cands, key=lambda c: (-c[0], c[1])):
            if not any(taken[i:i + n]):
                taken[i:i + n] = [True] * n
                chosen.append((i, n, key))
        return [PersonMention(self._names[key], toks[i].start, toks[i + n - 1].end, self.items(self._names[key]))
                for i, n, key in sorted(chosen)]

    def _surname_ok(self, tok: _Token, common: frozenset[str]) -> bool:
        return (tok.capital and tok.norm in self._director_surnames
                and len(tok.norm) >= self.config.min_surname_letters and tok.norm not in common
                and not (self.config.reject_first_name_surnames and tok.norm in self._first_names))

    # ---------------------------------------------------------------- reporting and files
    def coverage(self) -> dict:
        """How much of the catalogue the index covers, and what each source contributed.

        Only ml-100k-era movies (the two files) plus movies tagged with a known name have people.
        """
        with_person, with_director = set(), set()
        credits_by_source = dict.fromkeys(SOURCES, 0)
        items_by_source: dict[str, set[int]] = {s: set() for s in SOURCES}
        directors = 0
        for credits in self._credits.values():
            directors += any(c.role == "director" for c in credits)
            for c in credits:
                with_person.add(c.item_id)
                if c.role == "director":
                    with_director.add(c.item_id)
                for s in c.sources:
                    credits_by_source[s] += 1
                    items_by_source[s].add(c.item_id)
        n = max(self.n_items, 1)
        return {
            "catalog": self.catalog_name, "items": self.n_items, "people": len(self._names),
            "directors": directors, "credits": sum(len(v) for v in self._credits.values()),
            "items_with_person": len(with_person), "items_with_director": len(with_director),
            "share_with_person": round(len(with_person) / n, 4),
            "share_with_director": round(len(with_director) / n, 4),
            "credits_by_source": credits_by_source,
            "items_by_source": {s: len(v) for s, v in items_by_source.items()},
        }

    def to_dict(self) -> dict:
        """Plain data for ``save`` (and for comparing two indexes)."""
        return {
            "format": FORMAT, "version": FORMAT_VERSION, "catalog": self.catalog_name,
            "n_items": self.n_items, "config": asdict(self.config),
            "common_words": sorted(self.common_words), "report": self.report,
            "people": [{"key": k, "name": self._names[k],
                        "credits": [[c.item_id, c.role, c.order, list(c.sources)] for c in self._credits.get(k, [])]}
                       for k in sorted(self._names)],
        }

    def save(self, path: Path) -> None:
        """Write the index to one JSON file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> PeopleIndex:
        """Read an index written by ``save``; a file of another format or version raises ValueError."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != FORMAT_VERSION:
            got = (data.get("format"), data.get("version")) if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"{path}: not a people index of format {FORMAT!r} version {FORMAT_VERSION} "
                             f"(found {got}); rebuild it with PeopleIndex.build")
        names = {p["key"]: p["name"] for p in data["people"]}
        credits = {p["key"]: [Credit(int(i), r, int(o), tuple(s)) for i, r, o, s in p["credits"]]
                   for p in data["people"]}
        return cls(names, credits, data["n_items"], data["catalog"], PeopleConfig(**data["config"]),
                   set(data["common_words"]), data["report"])

