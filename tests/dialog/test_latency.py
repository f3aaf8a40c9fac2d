"""The latency tool's timing: a streamed draft that is replaced does not count as the first token."""
from tests.dialog.test_reply import ScriptedChat


def test_latency_times_a_replaced_draft_at_the_complete_reply(resources):
    from dialog.eval.latency import time_turn
    from dialog.manager import build_manager
    from dialog.ranker import RankerWeights
    good = build_manager(resources, weights=RankerWeights.prior(), chat=ScriptedChat(["Some crime picks for you!"]))
    _, row = time_turn(good, good.new_state(), "a crime drama")
    assert row["stream_was_reply"] and row["first_token_s"] == row["first_chunk_s"] < row["total_s"]
    bad = build_manager(resources, weights=RankerWeights.prior(), chat=ScriptedChat(["Try Casablanca!"]))
    _, row = time_turn(bad, bad.new_state(), "an animated movie")
    assert "used the template" in row["reply_log"] and not row["stream_was_reply"]
    assert row["first_token_s"] == row["total_s"] > row["first_chunk_s"]
