"""Title lookup: turn what a person types ("the matrix", "Matrix 1999", "matrx") into catalogue items.

Titles and their alternative names are normalised (case, accents, punctuation, a leading article)
and matched exactly first, then fuzzily with rapidfuzz. A year in the query re-weights candidates.
When the best candidates score alike (remakes, same-name films) the lookup says it is ambiguous
and returns them all, most popular first when popularity is known.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import numpy as np
from rapidfuzz import fuzz, process

from retrieval.catalog import ARTICLES, Catalog

_YEAR_IN_QUERY = re.compile(r"[\(\[]?\b(18[89]\d|19\d\d|20\d\d)\b[\)\]]?")
PREFIX_WEIGHT = 0.97
SUBSTRING_SCORE = 0.85
_LEADING_ARTICLE = re.compile(r"^(?:%s)\s+" % "|".join(re.escape(a.lower().rstrip("'")) for a in ARTICLES
                                                       if not a.endswith("'")))


def normalize_title(text: str) -> str:
    """Lower-case, strip accents and punctuation, drop a leading article: "The Matrix!" -> "matrix"."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = text.lower().replace("&", " and ")
    text = re.sub(r"^l'", "", text)
    text = re.sub(r"[^a-z0-9 ]+", " ", text)
    text = re.sub(r"\s+", " ", text).strip()
    return _LEADING_ARTICLE.sub("", text)


@dataclass(frozen=True)
class TitleMatch:
    item_id: int
    title: str
    year: int | None
    score: float  # 0..1, 1 = exact title (and year, when given)


@dataclass(frozen=True)
class Resolution:
    """The outcome of resolving a mention: ``item`` when one candidate clearly wins."""
    query: str
    item: TitleMatch | None
    candidates: list[TitleMatch]

    @property
    def ambiguous(self) -> bool:
        return self.item is None and len(self.candidates) > 1


class TitleIndex:
    """Fuzzy title search over a catalogue.

    Args:
        catalog: the items to search.
        popularity: optional (N,) interaction counts, used to order equally good candidates.
    """

    def __init__(self, catalog: Catalog, popularity: np.ndarray | None = None):
        items = catalog.items
        self.catalog = catalog
        self.popularity = (np.zeros(len(items)) if popularity is None
                           else np.asarray(popularity, dtype=np.float64))
        self._keys: list[str] = []
        self._key_item: list[int] = []
        self._key_weight: list[float] = []
        for item_id, title, alts in zip(items.item_id, items.title, items.alt_titles):
            for name in [title, *alts]:
                # The main title before a subtitle ("Star Wars: Episode IV - A New Hope") is a
                # key too, weighted below the full title so an exact full match wins.
                main = re.split(r":| - ", name, maxsplit=1)[0]
                for key, weight in ((normalize_title(name), 1.0), (normalize_title(main), PREFIX_WEIGHT)):
                    if key and (weight == 1.0 or key != normalize_title(name)):
                        self._keys.append(key)
                        self._key_item.append(int(item_id))
                        self._key_weight.append(weight)
        self._years = items["year"].values

    def lookup(self, query: str, limit: int = 5, min_score: float = 0.75) -> list[TitleMatch]:
        """Best matching items for a title mention, best first, each with a score in 0..1."""
        year = None
        m = _YEAR_IN_QUERY.search(query)
        if m and normalize_title(_YEAR_IN_QUERY.sub(" ", query)):
            year = int(m.group(1))
            query = _YEAR_IN_QUERY.sub(" ", query)
        key = normalize_title(query)
        if not key:
            return []
        hits = process.extract(key, self._keys, scorer=fuzz.ratio, limit=max(limit * 8, 40),
                               score_cutoff=min_score * 100 * 0.8)
        if not any(score / 100.0 * self._key_weight[idx] >= min_score for _, score, idx in hits) \
                and len(key) >= 6:
            # No title is close as a whole: accept titles that contain the mention word for word
            # ("harry potter", "fellowship of the ring"), scored as a partial match.
            pattern = re.compile(r"\b%s\b" % re.escape(key))
            hits = [(k, SUBSTRING_SCORE * 100, i) for i, k in enumerate(self._keys) if pattern.search(k)]
        best: dict[int, float] = {}
        for _, score, idx in hits:
            item_id = self._key_item[idx]
            s = score / 100.0 * self._key_weight[idx]
            item_year = self._years[item_id]
            if year is not None and item_year == item_year:
                s = min(1.0, s + 0.05) if int(item_year) == year else s * 0.85
            best[item_id] = max(best.get(item_id, 0.0), s)
        ranked = sorted(best.items(), key=lambda kv: (-kv[1], -self.popularity[kv[0]], kv[0]))
        out = []
        for item_id, s in ranked[:limit]:
            if s < min_score:
                break
            y = self._years[item_id]
            out.append(TitleMatch(item_id, self.catalog.items.title.iloc[item_id],
                                  None if y != y else int(y), round(float(s), 4)))
        return out

    def resolve(self, query: str, margin: float = 0.03, min_score: float = 0.75) -> Resolution:
        """One item when the best candidate clearly wins; otherwise the close candidates.

        Same-score candidates (e.g. two films called "Hamlet") are ambiguous unless popularity
        separates them by a wide margin (10x); the person is asked which one they mean.
        """
        matches = self.lookup(query, limit=8, min_score=min_score)
        if not matches:
            return Resolution(query, None, [])
        top = matches[0]
        if top.score == 1.0:  # an exact title beats every near miss
            close = [m for m in matches if m.score == 1.0]
        else:
            close = [m for m in matches if top.score - m.score <= margin]
        if len(close) == 1:
            return Resolution(query, top, matches)
        pops = [self.popularity[m.item_id] for m in close]
        if pops[0] > 0 and pops[0] >= 10 * max(pops[1:]):
            return Resolution(query, top, matches)
        return Resolution(query, None, close)
