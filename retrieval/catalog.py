"""The movie catalogue: one row per movie with a stable id, a clean title, year, genres, tags,
IMDb id, a description and the one text field that gets embedded.

Every title the system shows comes from here. ``item_id`` is the row position (0..N-1) and is
stable for a given data set because rows are ordered by MovieLens id.

Descriptions are joined from ``<data_dir>/movie-descriptions`` (see PROVENANCE.md there):
  ml-100k:          ClayRS IMDb plots (by ml-100k id), then IMDb one-liners (manfredmichael)
  ml-1m:            YuLan-Rec LLM descriptions (by movies.dat row), then Agent4Rec LLM summaries
  ml-latest-small:  ClayRS plots through the IMDb id, then ml-1m's sources (MovieLens ids are
                    shared between ml-1m and latest-small)
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from retrieval.data import RawDataset, _read_rows

ARTICLES = ("The", "A", "An", "Les", "La", "Le", "L'", "Il", "Das", "Der", "Die", "El", "Los", "Las",
            "Un", "Une", "Det", "Den", "I", "Lo", "Gli")
_YEAR_RE = re.compile(r"\s*\((\d{4})(?:[-–]\d{0,4})?\)\s*$")
_TRAILING_ARTICLE_RE = re.compile(r"^(.*), (%s)$" % "|".join(re.escape(a) for a in ARTICLES))


def _move_article(name: str) -> str:
    """"Matrix, The" -> "The Matrix"; "Enfants du paradis, Les" -> "Les Enfants du paradis"."""
    m = _TRAILING_ARTICLE_RE.match(name.strip())
    if not m:
        return name.strip()
    body, art = m.groups()
    return f"{art}{body}" if art.endswith("'") else f"{art} {body}"


def clean_title(raw: str) -> tuple[str, int | None]:
    """Split a MovieLens title into a display title and a year.

    "Matrix, The (1999)" -> ("The Matrix", 1999);
    "City of Lost Children, The (Cité des enfants perdus, La) (1995)" -> ("The City of Lost Children", 1995).
    """
    raw = raw.strip()
    year = None
    m = _YEAR_RE.search(raw)
    if m:
        year = int(m.group(1))
        raw = raw[: m.start()]
    # An alternative (usually original-language) title in trailing parentheses: keep the first.
    alt = re.match(r"^(.*?)\s+\((?:a\.k\.a\. )?[^()]+\)$", raw)
    if alt and alt.group(1):
        raw = alt.group(1)
    return _move_article(raw), year


def alternative_titles(raw: str) -> list[str]:
    """The other names a raw title carries, e.g. "(Cité des enfants perdus, La)" or "(a.k.a. X)"."""
    raw = _YEAR_RE.sub("", raw.strip())
    out = []
    for inner in re.findall(r"\(([^()]+)\)", raw):
        inner = re.sub(r"^a\.k\.a\.\s*", "", inner).strip()
        if inner:
            out.append(_move_article(inner))
    return out


@dataclass
class Catalog:
    """The items of one data set. ``items`` columns: item_id, movielens_id, title, year (float,
    NaN unknown), genres (list[str]), tags (list[str]), imdb_id (str | None), description (str,
    "" if none), text (str to embed), alt_titles (list[str])."""
    name: str
    items: pd.DataFrame
    description_sources: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def genres(self) -> list[str]:
        return sorted({g for gs in self.items["genres"] for g in gs})

    def item(self, item_id: int) -> dict:
        return self.items.iloc[int(item_id)].to_dict()

    def display(self, item_id: int) -> str:
        row = self.items.iloc[int(item_id)]
        return f"{row.title} ({int(row.year)})" if not np.isnan(row.year) else row.title

    def item_ids_for_movielens(self, movielens_ids) -> np.ndarray:
        """Map MovieLens ids to item ids (-1 where unknown)."""
        lookup = pd.Series(self.items["item_id"].values, index=self.items["movielens_id"].values)
        return lookup.reindex(np.asarray(movielens_ids)).fillna(-1).astype("int64").values

    def description_coverage(self) -> float:
        return float((self.items["description"].str.len() > 0).mean())


def item_text(title: str, year, genres: list[str], tags: list[str], description: str) -> str:
    """The single text field embedded for an item: title, year, genres, tags, description."""
    parts = [f"{title} ({int(year)})." if year == year and year is not None else f"{title}."]
    if genres:
        parts.append("Genres: " + ", ".join(genres) + ".")
    if tags:
        parts.append("Tags: " + ", ".join(tags) + ".")
    if description:
        parts.append(description)
    return " ".join(parts)


def _clean_description(text) -> str:
    if not isinstance(text, str):
        return ""
    text = re.sub(r"[<>]", "", text)          # YuLan-Rec wraps titles in <...>
    text = re.sub(r"_([^_]+)_ \(qv\)", r"\1", text)  # IMDb cross-reference markup
    return re.sub(r"\s+", " ", text).strip()


def _descriptions_100k(desc_dir: Path) -> tuple[dict, dict, dict]:
    """ml-100k id -> description, ml-100k id -> imdb id, source counts."""
    desc, imdb = {}, {}
    clay = desc_dir / "ml-100k_clayrs" / "items_info.json"
    if clay.is_file():
        for rec in json.loads(clay.read_text(encoding="utf-8")):
            mid = int(rec["movielens_id"])
            if rec.get("imdb_id"):
                imdb[mid] = rec["imdb_id"]
            if _clean_description(rec.get("plot")):
                desc[mid] = _clean_description(rec["plot"])
    details = desc_dir / "ml-100k_imdb-details" / "movielens100k_details.csv"
    if details.is_file():
        df = pd.read_csv(details, usecols=["movie_id", "description"])
        for mid, d in zip(df.movie_id, df.description):
            if int(mid) not in desc and _clean_description(d):
                desc[int(mid)] = _clean_description(d)
    return desc, imdb


def _clayrs_by_imdb(desc_dir: Path) -> dict:
    clay = desc_dir / "ml-100k_clayrs" / "items_info.json"
    if not clay.is_file():
        return {}
    out = {}
    for rec in json.loads(clay.read_text(encoding="utf-8")):
        if rec.get("imdb_id") and _clean_description(rec.get("plot")):
            out[str(rec["imdb_id"]).lstrip("0")] = _clean_description(rec["plot"])
    return out


def _descriptions_1m(data_dir: Path, desc_dir: Path) -> dict:
    """ml-1m MovieID -> description (YuLan-Rec first, then Agent4Rec)."""
    desc = {}
    movies = data_dir / "ml-1m" / "movies.dat"
    yulan = desc_dir / "ml-1m_yulan-rec" / "item.csv"
    if movies.is_file() and yulan.is_file():
        row_to_mid = [int(f[0]) for _, f in _read_rows(movies, "::", 3, "latin-1")]
        df = pd.read_csv(yulan, usecols=["id", "description"])
        for rid, d in zip(df["id"], df["description"]):
            if 0 <= int(rid) < len(row_to_mid) and _clean_description(d):
                desc[row_to_mid[int(rid)]] = _clean_description(d)
    agent = desc_dir / "ml-1m_agent4rec" / "movies_augmentation.csv"
    if agent.is_file():
        df = pd.read_csv(agent, usecols=["movie_id", "summary"])
        for mid, d in zip(df.movie_id, df.summary):
            if int(mid) not in desc and _clean_description(d):
                desc[int(mid)] = _clean_description(d)
    return desc


def build_catalog(raw: RawDataset, max_tags: int = 8) -> Catalog:
    """Build the catalogue of a loaded data set, joining descriptions and tags."""
    movies = raw.movies.sort_values("movielens_id").reset_index(drop=True)
    desc_dir = raw.data_dir / "movie-descriptions"
    if raw.name == "ml-100k":
        desc, imdb = _descriptions_100k(desc_dir)
        imdb_ids = movies["movielens_id"].map(imdb)
        descriptions = movies["movielens_id"].map(desc)
    elif raw.name == "ml-1m":
        imdb_ids = movies["imdb_id"]
        descriptions = movies["movielens_id"].map(_descriptions_1m(raw.data_dir, desc_dir))
    else:
        imdb_ids = movies["imdb_id"]
        by_imdb = _clayrs_by_imdb(desc_dir)
        from_clay = imdb_ids.map(lambda x: by_imdb.get(str(x).lstrip("0")) if isinstance(x, str) else None)
        from_1m = movies["movielens_id"].map(_descriptions_1m(raw.data_dir, desc_dir))
        descriptions = from_clay.where(from_clay.notna(), from_1m)

    tag_lists: dict[int, list[str]] = {}
    if len(raw.tags):
        counts = (raw.tags.assign(tag=raw.tags["tag"].str.lower())
                  .groupby(["movielens_id", "tag"]).size().reset_index(name="n")
                  .sort_values(["movielens_id", "n", "tag"], ascending=[True, False, True]))
        for mid, grp in counts.groupby("movielens_id"):
            tag_lists[int(mid)] = grp["tag"].head(max_tags).tolist()

    titles, years = zip(*(clean_title(t) for t in movies["raw_title"]))
    items = pd.DataFrame({
        "item_id": np.arange(len(movies), dtype=np.int64),
        "movielens_id": movies["movielens_id"].astype("int64").values,
        "title": list(titles),
        "year": np.array([np.nan if y is None else float(y) for y in years]),
        "genres": movies["genres"].tolist(),
        "tags": [tag_lists.get(int(m), []) for m in movies["movielens_id"]],
        "imdb_id": [x if isinstance(x, str) and x else None for x in imdb_ids],
        "description": [d if isinstance(d, str) else "" for d in descriptions],
        "alt_titles": [alternative_titles(t) for t in movies["raw_title"]],
    })
    items["text"] = [item_text(t, y, g, tg, d) for t, y, g, tg, d in
                     zip(items.title, items.year, items.genres, items.tags, items.description)]
    return Catalog(name=raw.name, items=items)
