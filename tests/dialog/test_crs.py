"""The CRS benchmark (dialog/eval/crs.py, crs_data.py) on tiny synthetic iEvaLM files written to
tmp_path and the 20-movie fixture catalogue: loading and the fit/dev split, title mapping, the
protocol, the metrics, broken lines, and the report."""
import json

import numpy as np
import pandas as pd
import pytest

import retrieval.resources
from dialog import batch
from dialog.eval import crs
from retrieval.catalog import Catalog
from retrieval.crs_data import (
    BOOK_OR_TV,
    MAIN_TITLE_ONLY,
    NOT_A_MOVIE,
    CRSDataError,
    CRSSample,
    TitleMapper,
    batch_conversation,
    load_crs,
    parse_sample,
    prepare,
    split_part,
)


def row(dialog_id, turn_id, context, rec, entity=(), resp="ok"):
    return {"dialog_id": dialog_id, "turn_id": turn_id, "context": list(context), "entity": list(entity),
            "rec": list(rec), "resp": resp}


def write_jsonl(path, rows, extra_lines=()):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "".join(x + "\n" for x in extra_lines))
    return path


def dialog_ids(part, n, prefix="d"):
    """n ReDial dialog ids that the hash puts in ``part``."""
    out = [f"{prefix}{i}" for i in range(500) if split_part(f"{prefix}{i}") == part]
    return out[:n]


def sample(rec, entity=(), context=("", "hi", "something to watch"), dataset="redial", resp="ok"):
    return CRSSample(dataset, "1", 2, tuple(context), tuple(entity), tuple(rec), resp)


@pytest.fixture
def mapper(fixture_catalog):
    pop = np.arange(len(fixture_catalog), dtype=np.float64)     # later movie ids more popular
    return TitleMapper(fixture_catalog, pop)


def item(catalog, title, year):
    hit = catalog.items[(catalog.items.title == title) & (catalog.items.year == year)]
    assert len(hit) == 1
    return int(hit.item_id.iloc[0])


# ---- loading and the fit/dev split ----
def test_redial_fit_and_dev_are_disjoint_by_dialog_and_independent_of_file_order(tmp_path):
    rows = [row(f"r{i}", t, ["", "hi", "a comedy please"], ["Heat (1995)"]) for i in range(200) for t in (2, 4)]
    write_jsonl(tmp_path / "a" / "redial" / "valid_data_processed.jsonl", rows)
    write_jsonl(tmp_path / "b" / "redial" / "valid_data_processed.jsonl", rows[::-1])
    parts = {}
    for root in ("a", "b"):
        for part in ("fit", "dev"):
            parts[root, part] = {s.dialog_id for s in load_crs("redial", part, root=tmp_path / root)}
    assert parts["a", "fit"] == parts["b", "fit"] and parts["a", "dev"] == parts["b", "dev"]
    assert not parts["a", "fit"] & parts["a", "dev"]
    assert parts["a", "fit"] | parts["a", "dev"] == {f"r{i}" for i in range(200)}
    assert 70 <= len(parts["a", "dev"]) <= 130            # about half
    dev = load_crs("redial", "dev", root=tmp_path / "a")
    assert all(len([s for s in dev if s.dialog_id == d]) == 2 for d in parts["a", "dev"])   # whole dialogs


def test_opendialkg_fit_is_train_and_dev_is_valid(tmp_path):
    write_jsonl(tmp_path / "opendialkg" / "train_data_processed.jsonl", [row(1, 1, ["x"], ["Up"])])
    write_jsonl(tmp_path / "opendialkg" / "valid_data_processed.jsonl", [row(2, 1, ["y"], ["Jaws"]),
                                                                         row(3, 1, ["z"], ["Heat"])])
    assert [s.id for s in load_crs("opendialkg", "fit", root=tmp_path)] == ["opendialkg/1/1"]
    assert [s.id for s in load_crs("opendialkg", "dev", root=tmp_path)] == ["opendialkg/2/1", "opendialkg/3/1"]


def test_broken_lines_get_one_message_each_and_the_rest_loads(tmp_path):
    good = [row(d, 2, ["", "hi", "x"], ["Heat (1995)"]) for d in dialog_ids("dev", 3)]
    path = write_jsonl(tmp_path / "redial" / "valid_data_processed.jsonl", good,
                       ["{not json", json.dumps({"dialog_id": "x", "turn_id": "two", "context": ["a"],
                                                 "entity": [], "rec": []}), "[1, 2]"])
    errors = []
    got = load_crs("redial", "dev", root=tmp_path, on_error=errors.append)
    assert len(got) == 3 and len(errors) == 3
    assert errors[0].startswith(f"{path}:4:") and "turn_id" in errors[1] and errors[2].startswith(f"{path}:6:")


def test_missing_folder_and_empty_file_are_clear_errors(tmp_path):
    with pytest.raises(CRSDataError, match="no CRS data folder"):
        load_crs("redial", "dev", root=tmp_path / "nowhere")
    write_jsonl(tmp_path / "redial" / "valid_data_processed.jsonl", [], ["garbage"])
    with pytest.raises(CRSDataError, match="no sample in the iEvaLM format"):
        load_crs("redial", "dev", root=tmp_path, on_error=lambda m: None)
    with pytest.raises(ValueError, match="'rec' must be a list"):
        parse_sample(json.dumps({"dialog_id": 1, "turn_id": 1, "context": ["a"], "entity": [], "rec": "x"}), "redial")


def test_batch_conversation_gives_the_last_turn_to_the_seeker_and_drops_empty_turns():
    s = sample(["Heat (1995)"], context=("", "Hi, what do you like?", "I like Heat (1995)", "Try Fargo", "meh"))
    conv = batch_conversation(s)
    assert conv["id"] == "redial/1/2"
    assert [t["role"] for t in conv["turns"]] == ["assistant", "user", "assistant", "user"]
    assert conv["turns"][-1] == {"role": "user", "text": "meh"}


# ---- mapping ----
def test_mapping_title_year_article_accents_and_alternative_titles(mapper, fixture_catalog):
    c = fixture_catalog
    cases = {
        "The Matrix (1999)": (item(c, "The Matrix", 1999), "title + year"),
        "Matrix (1999)": (item(c, "The Matrix", 1999), "title + year"),          # article-insensitive
        "Amélie (2001)": (item(c, "Amelie", 2001), "title + year"),              # accents
        "Le Fabuleux destin d'Amelie Poulain (2001)": (item(c, "Amelie", 2001), "title + year"),   # alternative
        "La Cité des enfants perdus (1995)": (item(c, "The City of Lost Children", 1995), "title + year"),
        "Toystory (1995)": (item(c, "Toy Story", 1995), "title + year"),         # spacing only
        "Casablanca (1943)": (item(c, "Casablanca", 1942), "title + year ±1"),
        "Godfather (1974)": (item(c, "The Godfather: Part II", 1974), "main title + year"),
        "The Godfather": (item(c, "The Godfather", 1972), "title"),
        "Hamlet (1990)": (item(c, "Hamlet", 1990), "title + year"),
        "Hamlet": (item(c, "Hamlet", 1996), "title, most popular of several"),   # yearless: most popular
    }
    for name, (want, how) in cases.items():
        m = mapper.map(name)
        assert (m.item_id, m.how) == (want, how), name


def test_mapping_says_why_a_name_does_not_map(mapper):
    reasons = {"Inception (1990)": "title in catalogue, other year",
               "Dune (2021)": "released after the catalogue",
               "Star Wars (1977)": "not in catalogue",
               "Drama": NOT_A_MOVIE,
               "Ὀδύσσεια": "no Latin letters or digits"}
    for name, why in reasons.items():
        m = mapper.map(name)
        assert m.item_id is None and m.how == why, name


def test_equally_popular_same_titles_are_ambiguous(fixture_catalog):
    m = TitleMapper(fixture_catalog, np.zeros(len(fixture_catalog)))
    assert (m.map("Hamlet").item_id, m.map("Hamlet").how) == (None, "ambiguous")
    assert m.map("Hamlet (1996)").item_id == item(fixture_catalog, "Hamlet", 1996)


def test_main_titles_and_genre_words_map_only_with_a_year():
    items = pd.DataFrame({"item_id": [0, 1, 2], "title": ["Star Wars: Episode IV - A New Hope",
                                                          "Star Wars: Episode V - The Empire Strikes Back", "Romance"],
                          "year": [1977.0, 1980.0, 1999.0], "alt_titles": [[], [], []],
                          "genres": [["Sci-Fi"], ["Sci-Fi"], ["Drama", "Romance"]]})
    m = TitleMapper(Catalog("tiny", items), np.array([5.0, 3.0, 1.0]))
    assert (m.map("Star Wars (1977)").item_id, m.map("Star Wars (1977)").how) == (0, "main title + year")
    assert (m.map("Star Wars").item_id, m.map("Star Wars").how) == (None, MAIN_TITLE_ONLY)   # a franchise
    assert (m.map("romance").item_id, m.map("romance").how) == (None, NOT_A_MOVIE)        # the genre
    assert m.map("Romance (1999)").item_id == 2


# ---- protocol ----
def test_protocol_drops_context_labels_and_samples_left_without_one(mapper, fixture_catalog):
    c = fixture_catalog
    samples = [
        sample(["The Matrix (1999)", "Alien (1979)"], entity=["The Matrix (1999)", "horror"]),   # Matrix dropped
        sample(["Heat (1995)"], entity=["Heat (1995)"]),                     # no label left: dropped
        sample(["Fargo (1996)"], context=("", "hi", "I loved Fargo (1996) a lot")),   # named verbatim: dropped
        sample(["Star Wars (1977)"]),                                         # nothing maps: not scored
        sample(["Jaws (1975)", "Jaws (1975)", "Titanic (1997)"]),             # duplicates count once
    ]
    scored, stats = prepare(samples, mapper)
    assert [e.labels for e in scored] == [(item(c, "Alien", 1979),),
                                          (item(c, "Jaws", 1975), item(c, "Titanic", 1997))]
    assert item(c, "The Matrix", 1999) in scored[0].context_items
    assert stats["samples"] == 5 and stats["samples_with_a_mapped_label"] == 4
    assert stats["samples_all_labels_in_context"] == 2 and stats["samples_scored"] == 2
    assert stats["labels"] == 8 and stats["labels_mapped"] == 7 and stats["labels_named_in_context"] == 3
    assert stats["unmapped_by"] == {"not in catalogue": 1}
    assert stats["unmapped_examples"]["not in catalogue"] == ["Star Wars (1977)"]


def test_unmapped_names_in_book_talk_are_counted_as_probably_not_movies(mapper):
    s = sample(["The Secret History"], context=("Who wrote The Goldfinch?",), dataset="opendialkg")
    _, stats = prepare([s, sample(["The Secret History"], context=("any thriller?",), dataset="opendialkg")], mapper)
    assert stats["unmapped_by"] == {"not in catalogue": 1, BOOK_OR_TV: 1}


# ---- metrics ----
def test_metrics_on_hand_computed_cases():
    m = crs.sample_metrics([4, 3, 9], {3})
    assert m == pytest.approx({"recall@1": 0, "recall@10": 1, "recall@50": 1, "ndcg@10": 1 / np.log2(3)})
    m = crs.sample_metrics([5, 7, 1], {7, 9})              # one of two labels, at rank 2
    assert m["recall@10"] == 0.5 and m["ndcg@10"] == pytest.approx((1 / np.log2(3)) / (1 + 1 / np.log2(3)))
    m = crs.sample_metrics([7, 7, 9], {9})                 # repeats do not push a label down
    assert m["ndcg@10"] == pytest.approx(1 / np.log2(3))
    m = crs.sample_metrics(list(range(100, 120)) + [3], {3})   # rank 21: only in the top 50
    assert (m["recall@1"], m["recall@10"], m["recall@50"], m["ndcg@10"]) == (0, 0, 1, 0)
    assert crs.sample_metrics([], {1}) == {"recall@1": 0, "recall@10": 0, "recall@50": 0, "ndcg@10": 0}
    s = crs.summarise({k: np.array([0.0, 1.0] * 20) for k in crs.METRICS})
    assert s["recall@10"] == 0.5 and s["n"] == 40 and s["ci95"]["recall@10"][0] < 0.5 < s["ci95"]["recall@10"][1]


def test_paired_difference_moves_both_systems_together():
    a = np.array([1.0, 0.0] * 50)
    per = {"full": {"recall@10": a}, "same": {"recall@10": a.copy()}, "worse": {"recall@10": a * 0.5}}
    d = crs.paired_vs(per)
    assert set(d) == {"same", "worse"}
    assert d["same"]["diff"] == 0 and d["same"]["ci95"] == [0, 0]          # identical lists: no spread at all
    assert d["worse"]["diff"] == 0.25 and 0 < d["worse"]["ci95"][0] < 0.25 < d["worse"]["ci95"][1]
    assert crs.paired_vs({"text": {"recall@10": a}}) == {}                  # no full, nothing to pair with


# ---- the command ----
@pytest.fixture
def crs_root(tmp_path):
    """Tiny ReDial and OpenDialKG files naming fixture movies."""
    root = tmp_path / "crs"
    rd = []
    for n, d in enumerate(dialog_ids("dev", 4)):
        rd.append(row(d, 2, ["", "Hi! What do you like?", "I love Alien (1979), something scary please"],
                      ["Aliens (1986)", "Jaws (1975)"], entity=["Alien (1979)", "horror"]))
        rd.append(row(d, 4, ["", "Hi!", "a funny animated film", "Toy Story (1995)?", "seen it, another?"],
                      ["Toy Story (1995)"] if n == 0 else ["Shrek (2001)"], entity=["Toy Story (1995)"]))
    rd += [row(d, 2, ["", "hi", "x"], ["Heat (1995)"]) for d in dialog_ids("fit", 3)]
    write_jsonl(root / "redial" / "valid_data_processed.jsonl", rd)
    write_jsonl(root / "opendialkg" / "train_data_processed.jsonl", [row(1, 1, ["x"], ["Up"])])
    write_jsonl(root / "opendialkg" / "valid_data_processed.jsonl",
                [row(10, 1, ["Do you like The Godfather?"], ["The Godfather", "Heat"], entity=["The Godfather"]),
                 row(11, 1, ["I want a sci-fi movie like Inception"], ["The Matrix"], entity=["Inception"]),
                 row(12, 3, ["Who wrote Hamlet?", "Shakespeare", "Any other books by him?"], ["Macbeth"])],
                ["{broken"])
    return root


@pytest.fixture
def fake_load(resources, monkeypatch):
    monkeypatch.setattr(retrieval.resources, "load_resources", lambda *a, **k: resources)


def test_report_json_shape_and_markdown(fake_load, crs_root, data_dir, tmp_path, capsys):
    out = tmp_path / "reports"
    reports = crs.main(["--crs-dir", str(crs_root), "--data-dir", str(data_dir), "--out", str(out), "--no-progress"])
    for ds in ("redial", "opendialkg"):
        data = json.loads((out / f"crs_{ds}.json").read_text())
        assert data == json.loads(json.dumps(reports[ds]))
        assert data["dataset"] == ds and data["split"] == "dev"
        assert set(data["systems"]) == {"popularity", "text", "full"}
        for s in data["systems"].values():
            assert {"recall@1", "recall@10", "recall@50", "ndcg@10"} <= set(s)
            lo, hi = s["ci95"]["recall@10"]
            assert lo <= s["recall@10"] <= hi and s["n"] == data["n_scored"] and s["mean_list_len"] > 0
        assert {"mapped_by", "unmapped_by", "labels", "labels_mapped"} <= set(data["mapping"])
        assert data["run"]["hardware"]["cpu_count"] and "wall_s" in data["run"]
        assert (out / f"crs_{ds}.md").read_text().startswith("# CRS benchmark")
    rd = json.loads((out / "crs_redial.json").read_text())
    assert (rd["n_samples"], rd["n_mapped"], rd["n_eligible"], rd["n_scored"]) == (8, 8, 7, 7)
    od = json.loads((out / "crs_opendialkg.json").read_text())
    assert (od["n_samples"], od["n_mapped"], od["n_scored"]) == (3, 2, 2) and od["input_errors"] == 1
    assert od["mapping"]["unmapped_by"] == {BOOK_OR_TV: 1}
    err = capsys.readouterr().err
    assert err.count("valid_data_processed.jsonl:4:") == 1          # the broken line, once


def test_exported_batch_input_scored_as_predictions_matches_full(fake_load, crs_root, data_dir, tmp_path, capsys):
    common = ["--crs-dir", str(crs_root), "--data-dir", str(data_dir), "--no-progress", "--crs", "redial"]
    conv = tmp_path / "conv.jsonl"
    crs.main(common + ["--export-batch", str(conv), "--limit", "5"])
    lines = [json.loads(x) for x in conv.read_text().splitlines()]
    assert len(lines) == 5 and all(x["turns"][-1]["role"] == "user" for x in lines)
    preds = tmp_path / "before.jsonl"
    batch.main(["--input", str(conv), "--output", str(preds), "--k", "50", "--no-progress",
                "--data-dir", str(data_dir)])
    with open(preds, "a") as f:
        f.write("not json\n")
    reports = crs.main(common + ["--limit", "5", "--systems", "full", "--predictions", f"before={preds}",
                                 "--out", str(tmp_path / "r")])
    s = reports["redial"]["systems"]
    assert s["before"]["n"] == 5 and s["before"]["missing"] == 0
    for m in crs.METRICS:
        assert s["before"][m] == s["full"][m]
    assert s["before"]["full_minus_this"] == {"metric": "recall@10", "diff": 0.0, "ci95": [0.0, 0.0]}
    assert "full_minus_this" not in s["full"]
    assert f"{preds}:6:" in capsys.readouterr().err


def test_clear_errors_for_missing_data_and_bad_options(fake_load, tmp_path, data_dir, capsys):
    with pytest.raises(SystemExit) as e:
        crs.main(["--crs-dir", str(tmp_path / "none"), "--data-dir", str(data_dir), "--out", str(tmp_path)])
    assert e.value.code == 2 and "no CRS data folder" in capsys.readouterr().err
    for bad in (["--crs", "movielens"], ["--systems", "llm"], ["--predictions", "x"],
                ["--predictions", f"full={tmp_path}"], ["--predictions", f"a={tmp_path / 'missing.jsonl'}"]):
        with pytest.raises(SystemExit) as e:
            crs.main(bad)
        assert e.value.code == 2


def test_missing_artefacts_name_the_rebuild_command(crs_root, data_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        crs.main(["--crs-dir", str(crs_root), "--data-dir", str(data_dir), "--artifacts", str(tmp_path / "none"),
                  "--out", str(tmp_path)])
    assert e.value.code == 2 and "training.build" in capsys.readouterr().err


def test_sequential_systems_and_full_with_other_weights(resources, monkeypatch, crs_root, data_dir, tmp_path, capsys):
    """``--systems sasrec,unisrec`` score the sequential models alone from the context's movies;
    ``--full-weights NAME=FILE`` scores full with other ranker weights in the same run, paired with
    full (the shipped weights written to a file again give a difference of exactly 0); unisrec
    without the model in the artefacts names the build flag."""
    from dataclasses import replace

    from dialog.ranker import default_weights_path
    from retrieval.unisrec import UniSRec, UniSRecConfig
    uni = UniSRec(UniSRecConfig(epochs=1, max_len=20, dim=16, progress=False), resources.text_embeds)
    uni.fit(resources.split.train, resources.split.n_items)
    monkeypatch.setattr(retrieval.resources, "load_resources", lambda *a, **k: replace(resources, unisrec=uni))
    same = tmp_path / "same.json"
    same.write_text(default_weights_path(resources.dataset).read_text())
    common = ["--crs-dir", str(crs_root), "--data-dir", str(data_dir), "--no-progress", "--crs", "redial"]
    reports = crs.main(common + ["--systems", "sasrec,unisrec,full", "--full-weights", f"full+same={same}",
                                 "--out", str(tmp_path / "r")])
    s = reports["redial"]["systems"]
    assert set(s) == {"sasrec", "unisrec", "full", "full+same"}
    assert all(s[n]["n"] == 7 and s[n]["mean_list_len"] > 0 for n in s)
    assert s["full+same"]["full_minus_this"]["diff"] == 0.0
    lists, _ = crs.rank_sequential(uni, [], 5)
    assert lists == {}
    monkeypatch.setattr(retrieval.resources, "load_resources", lambda *a, **k: resources)
    with pytest.raises(SystemExit) as e:
        crs.main(common + ["--systems", "unisrec", "--out", str(tmp_path / "r2")])
    assert e.value.code == 2 and "--unisrec" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        crs.main(common + ["--full-weights", f"full={same}"])
    assert e.value.code == 2
