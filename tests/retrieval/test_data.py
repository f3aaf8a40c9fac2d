"""Loaders: formats, encodings, data-directory lookup and the errors for bad input."""
import pytest

from retrieval.data import DataError, load_dataset, resolve_data_dir
from tests.conftest import MOVIES, synthetic_ratings


def test_latest_small_reads_crlf_csv_with_quoted_titles(data_root):
    raw = load_dataset("ml-latest-small", data_root)
    assert len(raw.ratings) == len(synthetic_ratings())
    assert len(raw.movies) == len(MOVIES)
    assert raw.has_timestamps
    title = raw.movies.set_index("movielens_id").loc[3, "raw_title"]
    assert title == "Matrix, The (1999)"  # no stray \r, quotes removed
    assert raw.movies.set_index("movielens_id").loc[3, "imdb_id"] == "1000003"
    assert raw.ratings["rating"].dtype.name == "float32"
    assert set(raw.tags["tag"]) == {"cyberpunk", "Cyberpunk", "keanu"}


def test_ml100k_reads_latin1_and_genre_flags(data_root):
    raw = load_dataset("ml-100k", data_root)
    movies = raw.movies.set_index("movielens_id")
    assert movies.loc[8, "raw_title"].startswith("City of Lost Children, The (Cité")
    assert movies.loc[4, "genres"] == ["Horror", "Sci-Fi"]
    assert raw.ratings["timestamp"].notna().all()


def test_ml1m_derived_csv_has_no_timestamps(tmp_path):
    d = tmp_path / "ml-1m"
    (d / "derived").mkdir(parents=True)
    (d / "movies.dat").write_text("1::Toy Story (1995)::Animation|Children's|Comedy\n2::Heat (1995)::Action\n",
                                  encoding="latin-1")
    (d / "derived" / "ratings_user_movie_rating.csv").write_text(
        "user_id,movie_id,rating\n1,1,5\n1,,3\n2,2,4\n")
    raw = load_dataset("ml-1m", tmp_path)
    assert not raw.has_timestamps
    assert len(raw.ratings) == 2  # the ambiguous row without a movie id is dropped


def test_unknown_dataset_lists_known_ones(data_root):
    with pytest.raises(ValueError, match="ml-100k, ml-latest-small, ml-1m"):
        load_dataset("netflix", data_root)


def test_missing_directory_names_path_and_remedy(tmp_path):
    with pytest.raises(DataError, match=r"ml-100k.*does not exist.*download"):
        load_dataset("ml-100k", tmp_path)


def test_missing_file_names_the_file(data_root):
    (data_root / "ml-latest-small" / "links.csv").unlink()
    with pytest.raises(DataError, match="links.csv"):
        load_dataset("ml-latest-small", data_root)


def test_malformed_row_names_file_and_line(data_root):
    path = data_root / "ml-100k" / "u.data"
    lines = path.read_text(encoding="latin-1").splitlines()
    lines[4] = "7\t3\tfive\t100"
    path.write_text("\n".join(lines) + "\n", encoding="latin-1")
    with pytest.raises(DataError, match=r"u\.data:5"):
        load_dataset("ml-100k", data_root)


def test_data_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ILMREC_DATA_DIR", str(tmp_path))
    assert resolve_data_dir() == tmp_path.resolve()
    assert resolve_data_dir(tmp_path / "x") == (tmp_path / "x").resolve()
