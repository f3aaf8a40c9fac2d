"""Conversation counts (retrieval/comention.py): counting, the two features, neighbours, save/load,
and that only the fit parts of the CRS data are read (tiny synthetic iEvaLM files)."""
import numpy as np
import pytest

from retrieval.comention import ConversationStats, fold_of, out_of_fold
from retrieval.crs_data import fit_conversation_stats
from tests.dialog.test_crs import dialog_ids, item, row, write_jsonl


def test_counts_and_features_by_hand():
    # dialog a: after 0 -> 1 and 2; dialog b: after 0 -> 1 (twice in b counts once), after 3 -> 1
    st = ConversationStats.count(5, [("a", [0], [1, 2]), ("b", [0], [1]), ("b", [0, 3], [1])])
    assert st.recommended.tolist() == [0, 3, 1, 0, 0]
    assert st.co[0, 1] == 2 and st.co[0, 2] == 1 and st.co[3, 1] == 1 and st.co.nnz == 3
    assert st.meta["samples"] == 3 and st.meta["dialogs"] == 2
    assert st.talked_about().tolist() == pytest.approx([0, 1, np.log1p(1) / np.log1p(3), 0, 0])
    top = np.log1p(2)
    assert st.after([0], [1, 2, 4]).tolist() == pytest.approx([1.0, np.log1p(1) / top, 0.0])
    assert st.after([0, 3], [1]).tolist() == pytest.approx([(np.log1p(2) + np.log1p(1)) / top])
    assert st.after([], [1]).tolist() == [0.0] and st.after([99], [1]).tolist() == [0.0]   # unknown anchor
    assert st.neighbours(0, 5) == [1, 2] and st.neighbours(4, 5) == []
    # named together: a {0, 1, 2}, b {0, 1, 3}
    assert st.together[0, 1] == 2 and st.together[1, 0] == 2 and st.together[2, 3] == 0 and st.together[3, 1] == 1
    assert st.together_with([3], [0, 1, 2]).tolist() == pytest.approx([1 / top * np.log1p(1), np.log1p(1) / top, 0])
    assert st.top(5) == [1, 2]                                     # never a movie nobody recommended
    assert st.top(5, allowed=np.array([True, False, True, True, True])) == [2]


def test_empty_counts_give_zero_features():
    st = ConversationStats.empty(4, "no CRS data")
    assert st.is_empty and st.talked_about().tolist() == [0.0] * 4 and st.after([1], [0, 2]).tolist() == [0, 0]
    assert st.top(3) == [] and st.meta["note"] == "no CRS data"


def test_save_load_round_trip_and_format_check(tmp_path):
    st = ConversationStats.count(6, [("a", [0, 5], [1, 2]), ("b", [2], [3])], {"catalogue": "x"})
    st.save(tmp_path / "c.npz")
    back = ConversationStats.load(tmp_path / "c.npz")
    assert back.recommended.tolist() == st.recommended.tolist() and (back.co != st.co).nnz == 0
    assert (back.together != st.together).nnz == 0
    assert back.meta == st.meta
    bad = ConversationStats(st.recommended, st.co, st.together, {**st.meta, "format": 99})
    bad.save(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="format 99"):
        ConversationStats.load(tmp_path / "bad.npz")


def test_only_fit_parts_are_counted(tmp_path, fixture_catalog):
    fit_id, dev_id = dialog_ids("fit", 1)[0], dialog_ids("dev", 1)[0]
    write_jsonl(tmp_path / "redial" / "valid_data_processed.jsonl", [
        row(fit_id, 2, ["", "hi", "I loved Heat (1995)"], ["Fargo (1996)"], entity=["Heat (1995)"]),
        row(dev_id, 2, ["", "hi", "I loved Heat (1995)"], ["Titanic (1997)"], entity=["Heat (1995)"])])
    write_jsonl(tmp_path / "opendialkg" / "train_data_processed.jsonl", [
        row(1, 1, ["I like Jaws"], ["Alien"], entity=["Jaws"]),
        row(2, 1, ["any good books like Jaws?"], ["Scream"], entity=["Jaws"])])       # books: not counted
    write_jsonl(tmp_path / "opendialkg" / "valid_data_processed.jsonl", [
        row(3, 1, ["I like Jaws"], ["Casablanca"], entity=["Jaws"])])
    pop = np.ones(len(fixture_catalog))
    st = fit_conversation_stats(fixture_catalog, pop, root=tmp_path)
    heat, fargo, titanic = (item(fixture_catalog, *t) for t in (("Heat", 1995), ("Fargo", 1996), ("Titanic", 1997)))
    jaws, alien, casablanca, scream = (item(fixture_catalog, *t) for t in (("Jaws", 1975), ("Alien", 1979),
                                                                           ("Casablanca", 1942), ("Scream", 1996)))
    assert st.co[heat, fargo] == 1 and st.co[jaws, alien] == 1
    assert st.recommended[titanic] == 0 and st.recommended[casablanca] == 0 and st.recommended[scream] == 0
    assert st.meta["samples"] == 2
    assert fit_conversation_stats(fixture_catalog, pop, root=tmp_path / "missing").is_empty


def test_out_of_fold_counts_leave_out_their_own_fold():
    keys = [f"redial/{i}" for i in range(40)]
    folds = 4
    assert {fold_of(k, folds) for k in keys} == set(range(folds))          # every fold gets dialogs
    assert [fold_of(k, folds) for k in keys] == [fold_of(k, folds) for k in keys]
    # every dialog recommends 1 after 0; dialog i also recommends movie 2 + i alone
    triples = [(k, [0], [1, 2 + i]) for i, k in enumerate(keys)]
    stats = out_of_fold(42, triples, folds)
    full = ConversationStats.count(42, triples)
    for i, k in enumerate(keys):
        f = fold_of(k, folds)
        assert stats[f].co[0, 2 + i] == 0 and stats[f].recommended[2 + i] == 0      # its own pair is gone
        assert all(stats[g].co[0, 2 + i] == 1 for g in range(folds) if g != f)      # the others keep it
    in_fold = [sum(fold_of(k, folds) == f for k in keys) for f in range(folds)]
    assert [s.co[0, 1] for s in stats] == [full.co[0, 1] - n for n in in_fold]
    with pytest.raises(ValueError, match="at least 2 folds"):
        out_of_fold(42, triples, 1)
