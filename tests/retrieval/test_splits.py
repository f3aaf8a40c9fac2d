"""Splits: time order, no leakage, stable ties, clear errors."""
import numpy as np
import pytest

from retrieval.catalog import build_catalog
from retrieval.data import DataError, load_dataset
from retrieval.splits import last_positive_holdout, leave_one_out, random_holdout
from tests.conftest import write_latest_small


def test_last_item_is_test_and_second_last_valid(data_root):
    raw = load_dataset("ml-latest-small", data_root)
    cat = build_catalog(raw)
    split = leave_one_out(raw, cat)
    r = raw.ratings.sort_values("timestamp")
    for u, uid in enumerate(split.user_ids):
        seq = cat.item_ids_for_movielens(r[r.user_id == uid].movielens_id.values)
        assert split.test[u] == seq[-1] and split.valid[u] == seq[-2]
        assert split.train[u].tolist() == seq[:-2].tolist()


def test_no_leakage(data_root):
    raw = load_dataset("ml-latest-small", data_root)
    split = leave_one_out(raw, build_catalog(raw))
    for u in range(split.n_users):
        assert split.test[u] not in split.train[u] and split.valid[u] not in split.train[u]
        assert split.test[u] != split.valid[u]
        assert split.history(u, "test").tolist() == split.train[u].tolist() + [split.valid[u]]
        assert split.history(u, "valid").tolist() == split.train[u].tolist()


def test_timestamp_ties_keep_file_order(tmp_path):
    rows = [(1, m, 4.0, 500) for m in (5, 3, 9, 1)]
    root = write_latest_small(tmp_path / "d", rows)
    raw = load_dataset("ml-latest-small", root)
    cat = build_catalog(raw)
    split = leave_one_out(raw, cat)
    assert cat.items.movielens_id[split.test[0]] == 1
    assert cat.items.movielens_id[split.valid[0]] == 9


def test_users_with_too_few_items_have_no_heldout(tmp_path):
    root = write_latest_small(tmp_path / "d", [(1, 1, 4.0, 1), (1, 2, 4.0, 2), (2, 1, 3.0, 1),
                                               (2, 2, 3.0, 2), (2, 3, 3.0, 3)])
    raw = load_dataset("ml-latest-small", root)
    split = leave_one_out(raw, build_catalog(raw))
    assert split.test.tolist()[0] == -1 and split.valid.tolist()[0] == -1
    assert split.test[1] >= 0


def test_no_timestamps_refuses_time_split_but_random_works(data_root):
    raw = load_dataset("ml-latest-small", data_root)
    raw.has_timestamps = False
    cat = build_catalog(raw)
    with pytest.raises(DataError, match="no timestamps"):
        leave_one_out(raw, cat)
    a, b = random_holdout(raw, cat, seed=3), random_holdout(raw, cat, seed=3)
    assert np.array_equal(a.test, b.test)


def test_unknown_user_is_a_clear_error(data_root):
    raw = load_dataset("ml-latest-small", data_root)
    split = leave_one_out(raw, build_catalog(raw))
    with pytest.raises(KeyError, match="user 99999 is not in this data set"):
        split.user_index(99999)
    assert split.user_index(int(split.user_ids[2])) == 2


def test_last_positive_holdout_hides_target_and_later_items(tmp_path):
    rows = [(1, 1, 5.0, 1), (1, 2, 4.0, 2), (1, 3, 2.0, 3), (2, 4, 5.0, 1), (2, 5, 1.0, 2)]
    root = write_latest_small(tmp_path / "d", rows)
    raw = load_dataset("ml-latest-small", root)
    cat = build_catalog(raw)
    split = last_positive_holdout(raw, cat)
    ml = cat.items.movielens_id
    assert ml[split.test[0]] == 2 and split.test_rating[0] == 4.0
    assert [ml[i] for i in split.train[0]] == [1]  # item 3 came after the target: not in train
    assert split.test[1] == -1 and len(split.train[1]) == 2  # the only positive is the first item
    assert (split.valid == -1).all()
