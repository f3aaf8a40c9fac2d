"""Each loss on a hand-computed case, in float64 so that the tolerances say something about the
formula and nothing about a CPU's float32 kernels."""
import math

import torch

from ilm import losses

F64 = torch.float64


def _ce(logits_row, target):
    return -logits_row[target] + math.log(sum(math.exp(x) for x in logits_row))


def test_itc_takes_max_over_queries_and_is_symmetric():
    # item 0 has queries e0 and e1, item 1 has queries e1 and -e0; texts are e0 and e1.
    item = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [-1.0, 0.0]]], dtype=F64)  # (2, 2, 2)
    text = torch.tensor([[2.0, 0.0], [0.0, 3.0]], dtype=F64)  # norms differ: cosine must ignore them
    t = 0.5
    sim = [[1.0, 1.0], [0.0, 1.0]]  # max over queries of cosine(item i, text j)
    s = [[x / t for x in row] for row in sim]
    i2t = (_ce(s[0], 0) + _ce(s[1], 1)) / 2
    t2i = (_ce([s[0][0], s[1][0]], 0) + _ce([s[0][1], s[1][1]], 1)) / 2
    got = losses.itc_loss(item, text, t)
    assert math.isclose(got.item(), (i2t + t2i) / 2, rel_tol=1e-9)


def test_itc_positive_mask_counts_repeated_items_as_positives():
    item = torch.tensor([[[1.0, 0.0]], [[1.0, 0.0]]], dtype=F64)
    text = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=F64)
    both = torch.ones(2, 2, dtype=torch.bool)
    assert losses.itc_loss(item, text, 1.0, positive_mask=both).item() < 1e-6
    assert math.isclose(losses.itc_loss(item, text, 1.0).item(), math.log(2), rel_tol=1e-9)


def test_itm_loss_is_cross_entropy_of_two_classes():
    logits = torch.tensor([[0.0, 2.0], [1.0, -1.0]], dtype=F64)
    labels = torch.tensor([1, 0])
    want = (_ce([0.0, 2.0], 1) + _ce([1.0, -1.0], 0)) / 2
    assert math.isclose(losses.itm_loss(logits, labels).item(), want, rel_tol=1e-9)


def test_itg_loss_shifts_and_ignores_minus_100():
    # vocab 3, positions 0..2; position t predicts label t+1; the last label is ignored.
    logits = torch.tensor([[[0.0, 1.0, 2.0], [3.0, 0.0, 0.0], [9.0, 9.0, 9.0]]], dtype=F64)
    labels = torch.tensor([[7, 2, -100]])  # label 0 is never predicted, -100 is skipped
    want = _ce([0.0, 1.0, 2.0], 2)
    assert math.isclose(losses.itg_loss(logits, labels).item(), want, rel_tol=1e-9)


def test_item_item_contrastive_hand_computed():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=F64)
    b = torch.tensor([[1.0, 1.0], [0.0, 2.0]], dtype=F64)
    t = 0.1
    c = 1 / math.sqrt(2)
    s = [[c / t, 0.0], [c / t, 1 / t]]  # cosine(a_i, b_j) / t
    ab = (_ce(s[0], 0) + _ce(s[1], 1)) / 2
    ba = (_ce([s[0][0], s[1][0]], 0) + _ce([s[0][1], s[1][1]], 1)) / 2
    got = losses.item_item_contrastive(a, b, t)
    assert math.isclose(got.item(), (ab + ba) / 2, rel_tol=1e-9)


def test_user_item_contrastive_is_one_directional():
    user = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=F64)
    item = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=F64)
    t = 1.0
    want = (_ce([1.0, 0.0], 0) + _ce([1.0, 0.0], 1)) / 2  # rows = users, columns = items
    got = losses.user_item_contrastive(user, item, t)
    assert math.isclose(got.item(), want, rel_tol=1e-9)
    pm = torch.tensor([[True, True], [True, True]])
    assert losses.user_item_contrastive(user, item, t, positive_mask=pm).item() < 1e-6
