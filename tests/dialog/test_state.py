import json

import pytest

from dialog.state import Constraints, DialogState


def test_state_round_trips_through_json():
    s = DialogState(liked=[1, 2], seen=[3], rejected=[4], shown=[5, 6], last_suggestions=[5, 6],
                    constraints=Constraints(include_genres=["Comedy"], exclude_genres=["Horror"], year_min=1990,
                                            like_items=[1], but="funnier", moods=["dark"], audience="kids"),
                    turn=3, user_id=7, messages=[{"role": "user", "text": "hi"}], asked_clarification=True)
    back = DialogState.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back == s


def test_from_dict_rejects_unknown_keys_and_defaults_missing_ones():
    with pytest.raises(ValueError, match="unknown dialog state keys"):
        DialogState.from_dict({"liked": [], "favourite_colour": "red"})
    assert DialogState.from_dict({"liked": [1]}).seen == []


def test_describe_in_plain_words(fixture_catalog):
    s = DialogState(liked=[2], constraints=Constraints(exclude_genres=["Horror"], year_min=1990))
    text = s.describe(fixture_catalog)
    assert "Liked: The Matrix (1999)" in text and "Avoid: Horror" in text and "1990" in text
    assert "Nothing known yet" in DialogState().describe(fixture_catalog)


def test_conflicts_are_reported():
    assert Constraints(include_genres=["Comedy"], exclude_genres=["Comedy"]).conflicts()
    assert Constraints(year_min=2000, year_max=1990).conflicts()
    assert not Constraints(include_genres=["Comedy"]).conflicts()
