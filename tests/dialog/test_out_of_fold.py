"""Out-of-fold conversation counts while fit samples are replayed (dialog/eval/out_of_fold.py): a
fit sample never finds its own dialog's recommendations in the counts it is ranked with, and the
manager's own counts are back afterwards."""
from dialog.eval.out_of_fold import OutOfFold
from retrieval.comention import ConversationStats, fold_of, out_of_fold
from retrieval.crs_data import CRSSample
from tests.dialog.test_crs import item


def two_folds_apart():
    """Two ReDial dialog ids in different folds of 2."""
    ids = [f"d{i}" for i in range(50)]
    a = ids[0]
    b = next(i for i in ids if fold_of(f"redial/{i}", 2) != fold_of(f"redial/{a}", 2))
    return a, b


def test_a_fit_sample_is_ranked_without_its_own_recommendations(manager, resources):
    cat = resources.catalog
    alien, aliens = item(cat, "Alien", 1979), item(cat, "Aliens", 1986)
    heat, fargo = item(cat, "Heat", 1995), item(cat, "Fargo", 1996)
    a, b = two_folds_apart()
    triples = [(f"redial/{a}", [alien], [aliens]), (f"redial/{b}", [heat], [fargo])]
    built = ConversationStats.count(len(cat), triples)
    manager.tools.use_conversations(built)
    oof = OutOfFold(out_of_fold(len(cat), triples, 2))
    samples = [CRSSample("redial", d, 2, ("", "hi", "x"), (), ()) for d in (a, b)]
    seen = {}
    for s in oof.replayed(manager, samples):
        talk = manager.tools.talk
        seen[s.dialog_id] = (talk.after([alien], [aliens])[0], talk.after([heat], [fargo])[0])
    assert set(seen) == {a, b}                                     # every sample once
    assert seen[a] == (0.0, 1.0) and seen[b] == (1.0, 0.0)         # its own pair gone, the other kept
    assert manager.tools.talk is built                             # restored
    for s in oof.replayed(manager, samples):
        break                                                      # stopping early restores too
    assert manager.tools.talk is built
    assert built.after([alien], [aliens])[0] == 1.0
