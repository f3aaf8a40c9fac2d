"""Fixtures for the app tests: a fake manager over the 20-movie fixture catalogue, and the real
dialog manager over smoke resources built once per test session from the same synthetic data."""
from __future__ import annotations

import pytest

from tests.conftest import write_latest_small


@pytest.fixture
def fake_manager(fixture_catalog):
    from tests.app.fake_manager import FakeManager
    return FakeManager(fixture_catalog)


@pytest.fixture(scope="session")
def real_manager(tmp_path_factory):
    from dialog.manager import build_manager
    from dialog.ranker import RankerWeights
    from retrieval.resources import build_resources
    root = tmp_path_factory.mktemp("app_data")
    write_latest_small(root)
    res = build_resources("ml-latest-small", root / "artifacts", config="smoke", data_dir=root, log=lambda *_: None)
    return build_manager(res, weights=RankerWeights.prior()), res, root
