import numpy as np
import pytest

from dialog.ranker import FEATURES, Ranker, RankerWeights, fit_weights
from dialog.tools import Candidate, ExplainArgs, FilterArgs, RankArgs, RetrieveArgs, Toolbox, langchain_tools


@pytest.fixture
def toolbox(resources):
    return Toolbox(resources, Ranker(RankerWeights.prior()))


def genres(res, i):
    return set(res.catalog.items.genres.iloc[i])


def test_retrieve_merges_sources_within_constraints(toolbox, resources):
    r = toolbox.retrieve(RetrieveArgs("space aliens", history=[2, 3], like_items=[3], exclude_ids=[4, 0],
                                      exclude_genres=["Drama"], year_min=1975, k_text=5, k_cf=5, k_item=3))
    ids = [c.item_id for c in r.candidates]
    assert ids and len(ids) == len(set(ids))
    assert not {0, 4} & set(ids)
    assert all("Drama" not in genres(resources, i) and resources.catalog.items.year.iloc[i] >= 1975 for i in ids)
    assert {"text", "cf", "liked", "popular"} <= {s for c in r.candidates for s in c.sources}
    assert "retrieved" in r.observation


def test_filter_drops_excluded_and_off_constraint_items(toolbox, resources):
    f = toolbox.filter(FilterArgs(list(range(20)), exclude_ids=[0, 1], include_genres=["Horror"], year_max=1990))
    assert set(f.item_ids) == {3, 4, 16}        # Alien 1979, Aliens 1986, Jaws 1975
    assert f.removed["excluded"] == 2 and sum(f.removed.values()) == 17


def test_rank_is_features_times_weights(resources):
    w = {f: 0.0 for f in FEATURES}
    w["popularity"] = 1.0
    tb = Toolbox(resources, Ranker(RankerWeights(w)))
    cands = [Candidate(i, ["popular"]) for i in range(20)]
    r = tb.rank(RankArgs(cands, k=3))
    pop = np.log1p(resources.popularity) / np.log1p(resources.popularity.max())
    expected = sorted(range(20), key=lambda i: (-pop[i], i))
    assert [x.item_id for x in r.ranked] == expected
    top = r.ranked[0]
    assert top.parts["popularity"] == pytest.approx(top.score, abs=1e-3) and top.parts["cf"] == 0.0


def test_rank_features_reflect_the_request(toolbox):
    cands = [Candidate(i, []) for i in (0, 3, 13)]     # Toy Story, Alien, Shrek
    ids, feats = toolbox.features(RankArgs(cands, liked=[1], include_genres=["Animation", "Comedy"],
                                           audience="kids"))
    col = {f: j for j, f in enumerate(FEATURES)}
    assert feats[0, col["genre_match"]] == 1.0 and feats[1, col["genre_match"]] == 0.0
    assert feats[0, col["audience_match"]] == 1.0 and feats[1, col["audience_match"]] == -1.0
    assert feats[0, col["liked_text"]] > feats[1, col["liked_text"]]      # Toy Story is close to Toy Story 2


def test_explain_names_genre_year_and_liked_movie(toolbox):
    r = toolbox.explain(ExplainArgs(1, parts={"liked_text": 1.0}, liked=[0], include_genres=["Animation"]))
    assert "animation" in r.reason and "1999" in r.reason and "Toy Story" in r.reason


def test_langchain_tools_round_trip(toolbox):
    tools = {t.name: t for t in langchain_tools(toolbox)}
    assert set(tools) == {"retrieve", "filter", "rank", "explain"}
    got = tools["retrieve"].invoke({"query_text": "gangsters", "exclude_ids": [8]})
    assert got["candidates"] and all(c["item_id"] != 8 for c in got["candidates"])
    kept = tools["filter"].invoke({"item_ids": [3, 9], "exclude_genres": ["Horror"]})
    assert kept["item_ids"] == [9]
    ranked = tools["rank"].invoke({"item_ids": [3, 9, 10], "query_text": "mafia family", "k": 2})
    assert len(ranked["ranked"]) == 2
    assert tools["explain"].invoke({"item_id": 9})["reason"]


def test_fit_weights_learns_the_informative_feature():
    rng = np.random.default_rng(0)
    groups = []
    for _ in range(60):
        x = rng.normal(size=(30, len(FEATURES)))
        t = int(np.argmax(x[:, 1] + 0.1 * rng.normal(size=30)))    # feature 1 ("text") decides
        groups.append((x, t))
    w, info = fit_weights(groups)
    assert np.argmax(np.abs(w)) == 1 and w[1] > 0 and info["train_hit@5"] > 0.9


def test_weights_save_load(tmp_path):
    w = RankerWeights({"cf": 0.5, "text": 2.0}, {"fitted": True})
    w.save(tmp_path / "w.json")
    back = RankerWeights.load(tmp_path / "w.json")
    assert back.weights == w.weights and back.vector()[FEATURES.index("text")] == 2.0
    (tmp_path / "bad.json").write_text('{"weights": {"nonsense": 1}}')
    with pytest.raises(ValueError, match="unknown ranker features"):
        RankerWeights.load(tmp_path / "bad.json")


def test_a_constant_feature_gets_no_weight():
    rng = np.random.default_rng(1)
    groups = []
    for _ in range(20):
        x = rng.normal(size=(10, len(FEATURES)))
        x[:, FEATURES.index("ilm")] = 0.0
        groups.append((x, int(np.argmax(x[:, 0]))))
    w, info = fit_weights(groups)
    assert w[FEATURES.index("ilm")] == 0.0 and FEATURES.index("ilm") in info["constant_features"]


def test_what_people_recommend_in_conversations_is_a_source_and_features(resources):
    import dataclasses

    from retrieval.comention import ConversationStats
    # people recommended Aliens (4) and Jaws (16) after Alien (3); Titanic (15) is the most talked-about
    st = ConversationStats.count(len(resources.catalog), [("a", [3], [4, 16]), ("b", [3], [4]), ("c", [], [15]),
                                                          ("d", [], [15]), ("e", [], [15])])
    tb = Toolbox(dataclasses.replace(resources, conversations=st), Ranker(RankerWeights.prior()))
    r = tb.retrieve(RetrieveArgs("", like_items=[3], exclude_ids=[3], k_popular=0, k_item=0))
    src = {c.item_id: c.sources for c in r.candidates}
    assert "after" in src[4] and "after" in src[16] and "talked_about" in src[15]
    assert r.counts["after"] == 2
    r = tb.retrieve(RetrieveArgs("", mentioned=[3], exclude_ids=[3, 16], k_popular=0, k_item=0))
    assert 16 not in {c.item_id for c in r.candidates} and "after" in {c.item_id: c.sources for c in r.candidates}[4]
    col = {f: j for j, f in enumerate(FEATURES)}
    cands = [Candidate(i, []) for i in (4, 16, 15, 0)]
    _, f = tb.features(RankArgs(cands, liked=[3]))
    assert f[0, col["after_liked"]] == pytest.approx(1.0) and 0 < f[1, col["after_liked"]] < 1
    assert f[2, col["after_liked"]] == 0 and f[:, col["after_mentioned"]].tolist() == [0, 0, 0, 0]
    assert f[2, col["talked_about"]] == 1.0 and f[3, col["talked_about"]] == 0.0
    assert f[1, col["together"]] > 0 and f[2, col["together"]] == 0           # Jaws was named with Alien
    years = resources.catalog.items.year.to_numpy()[[4, 16, 15, 0]]
    assert f[:, col["recency"]].tolist() == pytest.approx(np.clip((years - 1970) / 48, 0, 1).tolist())
    _, f = tb.features(RankArgs(cands, mentioned=[3]))
    assert f[0, col["after_mentioned"]] == pytest.approx(1.0) and f[0, col["after_liked"]] == 0
    # without conversation counts (older artefacts) the features are 0 and nothing else changes
    _, f0 = Toolbox(resources, Ranker(RankerWeights.prior())).features(RankArgs(cands, liked=[3]))
    assert not f0[:, [col["talked_about"], col["after_liked"], col["after_mentioned"], col["together"]]].any()


def test_unisrec_feature_is_its_standardised_score_and_zero_without_it(resources):
    """The ``unisrec`` column: the UniSRec model's score for the session history, standardised over
    the catalogue like ``cf``; 0 when the artefacts hold no such model or there is no history."""
    from dataclasses import replace

    from retrieval.unisrec import UniSRec, UniSRecConfig
    col = {f: j for j, f in enumerate(FEATURES)}
    cands, hist = [Candidate(i, []) for i in (0, 3, 13)], [1, 2]
    _, f = Toolbox(resources, Ranker(RankerWeights.prior())).features(RankArgs(cands, history=hist))
    assert not f[:, col["unisrec"]].any() and f[:, col["cf"]].any()
    uni = UniSRec(UniSRecConfig(epochs=2, max_len=20, dim=16, progress=False), resources.text_embeds)
    uni.fit(resources.split.train, resources.split.n_items)
    tb = Toolbox(replace(resources, unisrec=uni), Ranker(RankerWeights.prior()))
    _, f = tb.features(RankArgs(cands, history=hist))
    s = uni.score(np.zeros(1, np.int64), [np.array(hist)])[0].astype(np.float64)
    np.testing.assert_allclose(f[:, col["unisrec"]], ((s - s.mean()) / s.std())[[0, 3, 13]], rtol=1e-4)
    _, f = tb.features(RankArgs(cands))
    assert not f[:, col["unisrec"]].any()
