"""MovieLens loading: ratings, movies and tags of ml-100k, ml-latest-small and ml-1m.

Owns reading the raw files in the layout of ``../shared/data`` (see its PROVENANCE.md) into
uniform pandas frames, the data-directory lookup, and an optional downloader of the official
archives for users with internet. Nothing here is cached or copied into the repository: the
MovieLens terms forbid redistribution.

Uniform output (``RawDataset``):
  ratings: user_id (int64), movielens_id (int64), rating (float32), timestamp (Int64, <NA> for ml-1m)
  movies:  movielens_id (int64), raw_title (str), genres (list[str]), imdb_id (str | None)
  tags:    movielens_id (int64), tag (str)  (ml-latest-small only, else empty)
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

DATASETS = ("ml-100k", "ml-latest-small", "ml-1m")
DEFAULT_DATASET = "ml-latest-small"
ENV_DATA_DIR = "ILMREC_DATA_DIR"
REPO_ROOT = Path(__file__).resolve().parent.parent

# Official archives for the optional downloader (users with internet only). The archives' own
# hashes are not pinned here; instead the unpacked files are checked against the sha256 values in
# ../shared/data/PROVENANCE.md (and ml-1m's ratings.dat against its known git blob id).
ARCHIVE_URL = "https://files.grouplens.org/datasets/movielens/{name}.zip"
FILE_SHA256 = {
    "ml-100k": {"u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
                "u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701"},
    "ml-latest-small": {
        "ratings.csv": "aa289ca83157595d0df6aea1be6a4ded676ddc4385472e8313a8ed9805352646",
        "movies.csv": "5a5f32dd9bb3797b8e728a1b98958789d2b13f294a69fdfbc5727f8a9611aa07",
        "links.csv": "97ad18e4e56a09363c65676b6cb3482ce3e2cea2372a24620c1599c843325f31",
        "tags.csv": "92a9f8bb7916dceef6151209845788c3643f794dfa79d1feaec7121b5960399d"},
    "ml-1m": {"movies.dat": "0140fc2356357c1a851d0f52e893a1e4d3696df632c4141cea8d5bc3d621f0b9"},
}
ML1M_RATINGS_GIT_BLOB = "77a7c4b150f588c23bb9e1f068aa996c0b413695"

ML100K_GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                 "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                 "Romance", "Sci-Fi", "Thriller", "War", "Western"]


class DataError(RuntimeError):
    """A data file is missing or malformed; the message says what, where and how to fix it."""


@dataclass
class RawDataset:
    name: str
    ratings: pd.DataFrame
    movies: pd.DataFrame
    tags: pd.DataFrame
    has_timestamps: bool
    data_dir: Path


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data root: the argument, else $ILMREC_DATA_DIR, else ``../shared/data`` beside the repo."""
    if data_dir is not None:
        return Path(data_dir).expanduser().resolve()
    if os.environ.get(ENV_DATA_DIR):
        return Path(os.environ[ENV_DATA_DIR]).expanduser().resolve()
    return (REPO_ROOT.parent / "shared" / "data").resolve()


def check_dataset_name(name: str) -> str:
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known data sets: {', '.join(DATASETS)}")
    return name


def _require(path: Path, name: str) -> Path:
    if not path.is_file():
        raise DataError(
            f"{name}: expected file {path} is missing. Point --data-dir or ${ENV_DATA_DIR} at a folder "
            f"holding {name}/ (the layout of ../shared/data), or fetch it with "
            f"`python -m retrieval.data download {name} --data-dir DIR` on a machine with internet.")
    return path


def _read_rows(path: Path, sep: str, n_fields: int, encoding: str, skip_header: bool = False):
    """Yield (line_no, fields) with a clear error naming file and line on a malformed row."""
    with open(path, encoding=encoding, newline="") as f:
        for line_no, line in enumerate(f, start=1):
            if skip_header and line_no == 1:
                continue
            line = line.rstrip("\r\n")
            if not line:
                continue
            fields = line.split(sep)
            if len(fields) != n_fields:
                raise DataError(f"{path}:{line_no}: expected {n_fields} fields separated by {sep!r}, "
                                f"got {len(fields)}: {line[:80]!r}")
            yield line_no, fields


def _read_csv_rows(path: Path, n_fields: int, encoding: str = "utf-8"):
    """Yield (line_no, fields) of a CSV with a header (quoted fields, CRLF tolerated)."""
    with open(path, encoding=encoding, newline="") as f:
        reader = csv.reader(f)
        next(reader, None)
        for fields in reader:
            if not fields:
                continue
            if len(fields) != n_fields:
                raise DataError(f"{path}:{reader.line_num}: expected {n_fields} CSV fields, got "
                                f"{len(fields)}: {','.join(fields)[:80]!r}")
            yield reader.line_num, fields


def _ints(path: Path, line_no: int, *values: str) -> list[int]:
    try:
        return [int(v) for v in values]
    except ValueError:
        raise DataError(f"{path}:{line_no}: expected integers, got {values!r}") from None


def _ratings_frame(rows: list[tuple], path: Path) -> pd.DataFrame:
    if not rows:
        raise DataError(f"{path}: no ratings found")
    df = pd.DataFrame(rows, columns=["user_id", "movielens_id", "rating", "timestamp"])
    df["user_id"] = df["user_id"].astype("int64")
    df["movielens_id"] = df["movielens_id"].astype("int64")
    df["rating"] = df["rating"].astype("float32")
    df["timestamp"] = df["timestamp"].astype("Int64")
    return df


def _load_ml100k(root: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    path = _require(root / "u.data", "ml-100k")
    rows = []
    for ln, (u, i, r, t) in _read_rows(path, "\t", 4, "latin-1"):
        u, i, r, t = _ints(path, ln, u, i, r, t)
        rows.append((u, i, float(r), t))
    ratings = _ratings_frame(rows, path)
    path = _require(root / "u.item", "ml-100k")
    movies = []
    for ln, f in _read_rows(path, "|", 24, "latin-1"):
        flags = f[5:]
        genres = [g for g, flag in zip(ML100K_GENRES, flags) if flag == "1" and g != "unknown"]
        movies.append((_ints(path, ln, f[0])[0], f[1], genres, None))
    movies = pd.DataFrame(movies, columns=["movielens_id", "raw_title", "genres", "imdb_id"])
    return ratings, movies, pd.DataFrame(columns=["movielens_id", "tag"])


def _load_latest_small(root: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    path = _require(root / "ratings.csv", "ml-latest-small")
    rows = []
    for ln, (u, i, r, t) in _read_csv_rows(path, 4):
        u, i, t = _ints(path, ln, u, i, t)
        try:
            r = float(r)
        except ValueError:
            raise DataError(f"{path}:{ln}: rating {r!r} is not a number") from None
        rows.append((u, i, r, t))
    ratings = _ratings_frame(rows, path)
    path = _require(root / "movies.csv", "ml-latest-small")
    movies = []
    for ln, (i, title, genres) in _read_csv_rows(path, 3):
        g = [] if genres == "(no genres listed)" else genres.split("|")
        movies.append((_ints(path, ln, i)[0], title, g))
    movies = pd.DataFrame(movies, columns=["movielens_id", "raw_title", "genres"])
    links = _require(root / "links.csv", "ml-latest-small")
    imdb = {}
    for ln, (i, imdb_id, _tmdb) in _read_csv_rows(links, 3):
        imdb[_ints(links, ln, i)[0]] = imdb_id or None
    movies["imdb_id"] = movies["movielens_id"].map(imdb).astype(object)
    tags_path = root / "tags.csv"
    tags = []
    if tags_path.is_file():
        for ln, (_u, i, tag, _t) in _read_csv_rows(tags_path, 4):
            tags.append((_ints(tags_path, ln, i)[0], tag.strip()))
    return ratings, movies, pd.DataFrame(tags, columns=["movielens_id", "tag"])


def _load_ml1m(root: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    # ratings.dat is absent from ../shared/data; the derived CSV has all 1,000,209 ratings but no
    # timestamps (see PROVENANCE.md). A real ratings.dat, where present, is preferred.
    dat = root / "ratings.dat"
    rows = []
    if dat.is_file():
        for ln, (u, i, r, t) in _read_rows(dat, "::", 4, "latin-1"):
            u, i, r, t = _ints(dat, ln, u, i, r, t)
            rows.append((u, i, float(r), t))
        path = dat
    else:
        path = _require(root / "derived" / "ratings_user_movie_rating.csv", "ml-1m")
        for ln, (u, i, r) in _read_csv_rows(path, 3):
            if not i:  # 6 ratings whose MovieID is ambiguous (PROVENANCE.md)
                continue
            u, i, r = _ints(path, ln, u, i, r)
            rows.append((u, i, float(r), None))
    ratings = _ratings_frame(rows, path)
    path = _require(root / "movies.dat", "ml-1m")
    movies = []
    for ln, (i, title, genres) in _read_rows(path, "::", 3, "latin-1"):
        movies.append((_ints(path, ln, i)[0], title, genres.split("|") if genres else [], None))
    movies = pd.DataFrame(movies, columns=["movielens_id", "raw_title", "genres", "imdb_id"])
    return ratings, movies, pd.DataFrame(columns=["movielens_id", "tag"])


_LOADERS = {"ml-100k": _load_ml100k, "ml-latest-small": _load_latest_small, "ml-1m": _load_ml1m}


def load_dataset(name: str, data_dir: str | os.PathLike | None = None) -> RawDataset:
    """Load one MovieLens data set from ``<data_dir>/<name>/``.

    Raises:
        ValueError: unknown data set name (the message lists the known ones).
        DataError: a missing directory or file, or a malformed row (file and line named).
    """
    check_dataset_name(name)
    base = resolve_data_dir(data_dir)
    root = base / name
    if not root.is_dir():
        raise DataError(
            f"data directory {root} does not exist. Expected MovieLens {name} under {base} "
            f"(set --data-dir or ${ENV_DATA_DIR}; default ../shared/data beside the repo), or fetch it with "
            f"`python -m retrieval.data download {name} --data-dir {base}` on a machine with internet.")
    ratings, movies, tags = _LOADERS[name](root)
    return RawDataset(name=name, ratings=ratings, movies=movies, tags=tags,
                      has_timestamps=bool(ratings["timestamp"].notna().all()), data_dir=base)


def download(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Fetch an official GroupLens archive, unpack it under ``data_dir`` and verify its files."""
    check_dataset_name(name)
    url = ARCHIVE_URL.format(name=name)
    base = resolve_data_dir(data_dir)
    base.mkdir(parents=True, exist_ok=True)
    print(f"downloading {url} ...")
    with urllib.request.urlopen(url, timeout=60) as resp:
        blob = resp.read()
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        zf.extractall(base)
    root = base / name
    for fname, want in FILE_SHA256[name].items():
        got = hashlib.sha256((root / fname).read_bytes()).hexdigest()
        if got != want:
            raise DataError(f"{root / fname}: sha256 {got} does not match the expected {want}")
    if name == "ml-1m":
        data = (root / "ratings.dat").read_bytes()
        got = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        if got != ML1M_RATINGS_GIT_BLOB:
            raise DataError(f"{root / 'ratings.dat'}: git blob {got} != expected {ML1M_RATINGS_GIT_BLOB}")
    print(f"unpacked and verified {name} in {root}")
    return root


def _main(argv: list[str] | None = None) -> None:
    import argparse
    p = argparse.ArgumentParser(prog="python -m retrieval.data",
                                description="Inspect or download MovieLens data sets.")
    sub = p.add_subparsers(dest="cmd", required=True)
    for cmd, help_ in (("info", "print counts of a data set"),
                       ("download", "download and verify an official archive (needs internet)")):
        s = sub.add_parser(cmd, help=help_)
        s.add_argument("dataset", choices=DATASETS)
        s.add_argument("--data-dir", default=None, help="data root (default: $ILMREC_DATA_DIR or ../shared/data)")
    a = p.parse_args(argv)
    if a.cmd == "download":
        download(a.dataset, a.data_dir)
        return
    raw = load_dataset(a.dataset, a.data_dir)
    r = raw.ratings
    print(f"{raw.name}: {len(r):,} ratings, {r.user_id.nunique():,} users, {r.movielens_id.nunique():,} rated "
          f"movies, {len(raw.movies):,} movies, {len(raw.tags):,} tags, timestamps: {raw.has_timestamps}")


if __name__ == "__main__":
    _main()
