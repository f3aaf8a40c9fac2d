"""Resources: build, load, and clear errors for missing or corrupt artefacts."""
import numpy as np
import pytest

from retrieval.resources import ArtifactError, build_resources, load_resources


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from tests.conftest import write_latest_small
    root = tmp_path_factory.mktemp("res")
    data = write_latest_small(root / "data")
    res = build_resources("ml-latest-small", root / "art", config="smoke", data_dir=data, log=lambda *_: None)
    return root, data, res


def test_round_trip_gives_identical_scores(built):
    root, data, res = built
    loaded = load_resources("ml-latest-small", root / "art", data_dir=data)
    hist = [res.split.train[0], res.split.train[1]]
    assert np.allclose(res.cf.score(np.arange(2), hist), loaded.cf.score(np.arange(2), hist), atol=1e-6)
    assert np.array_equal(res.text_embeds, loaded.text_embeds)
    q = res.text_embeds[3]
    assert res.text_index.search(q, 5) == loaded.text_index.search(q, 5)
    assert loaded.text_index.search(q, 1)[0][0] == 3


def test_missing_and_corrupt_artefacts_are_named(built, tmp_path):
    import shutil
    root, data, _ = built
    art = tmp_path / "art"
    shutil.copytree(root / "art", art)
    with pytest.raises(ArtifactError, match="manifest.json missing.*training.build"):
        load_resources("ml-latest-small", tmp_path / "nothing", data_dir=data)
    ckpt = art / "ml-latest-small" / "sasrec.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:100])  # a truncated checkpoint
    with pytest.raises(ArtifactError, match="sasrec.pt is corrupt"):
        load_resources("ml-latest-small", art, data_dir=data)
    ckpt.unlink()
    with pytest.raises(ArtifactError, match="sasrec.pt is missing"):
        load_resources("ml-latest-small", art, data_dir=data)


def test_user_history_excludes_the_target(built):
    _, _, res = built
    uid = int(res.split.user_ids[0])
    hist = res.user_history(uid)
    assert res.split.test[0] not in hist
    with pytest.raises(KeyError, match="not in this data set"):
        res.user_history(424242)


def test_older_artefacts_get_the_new_parts_added(built, tmp_path):
    """Artefacts built before conversations.npz / people.json existed load without them (the
    features are then 0); training.build adds them and the manifest covers them."""
    import json
    import shutil

    from retrieval.resources import add_missing_parts, missing_parts
    root, data, _ = built
    art = tmp_path / "art"
    shutil.copytree(root / "art", art)
    out = art / "ml-latest-small"
    manifest = json.loads((out / "manifest.json").read_text())
    assert {"conversations.npz", "people.json"} <= set(manifest["files"])
    for name in ("conversations.npz", "people.json"):
        (out / name).unlink()
        del manifest["files"][name]
    (out / "manifest.json").write_text(json.dumps(manifest))
    old = load_resources("ml-latest-small", art, data_dir=data)
    assert old.conversations is None and old.people is None
    assert missing_parts(old) == ["conversations", "people"]
    add_missing_parts(old, art, data, log=lambda *_: None)
    again = load_resources("ml-latest-small", art, data_dir=data)
    assert again.conversations is not None and again.people is not None and missing_parts(again) == []
    assert again.conversations.is_empty          # the fixture data has no crs folder: empty counts, a note
    assert "no CRS data folder" in again.conversations.meta["note"]


def test_unisrec_is_optional_added_to_the_manifest_and_loaded(built, tmp_path):
    """Artefacts without unisrec.pt load with ``unisrec`` None; ``add_unisrec`` trains it on the same
    train part, the manifest covers it, and it loads back with the same scores (a corrupt file is
    named)."""
    import shutil

    from retrieval.resources import add_unisrec
    root, data, _ = built
    art = tmp_path / "art"
    shutil.copytree(root / "art", art)
    res = load_resources("ml-latest-small", art, data_dir=data)
    assert res.unisrec is None
    add_unisrec(res, art, log=lambda *_: None)
    back = load_resources("ml-latest-small", art, data_dir=data)
    hist = [res.split.train[0], res.split.train[1]]
    np.testing.assert_allclose(back.unisrec.score(np.arange(2), hist), res.unisrec.score(np.arange(2), hist), atol=1e-5)
    assert back.unisrec.config.dim == 16 and "unisrec" in back.manifest["added"]
    ckpt = art / "ml-latest-small" / "unisrec.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    with pytest.raises(ArtifactError, match="unisrec.pt is corrupt"):
        load_resources("ml-latest-small", art, data_dir=data)
