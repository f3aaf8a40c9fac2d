"""The load test's cross-talk checks catch cross-talk (the load test itself runs outside `make test`)."""
from __future__ import annotations

from app.eval.loadtest import check_store, check_turn, pct, script, year_of
from app.store import Store


def _chat(*texts):
    return [{"role": "user", "content": [{"type": "text", "text": t}]} for t in texts]


def test_check_turn_accepts_own_and_flags_others():
    own = script(3, 5)
    state = f"<li>Turn 2, new user</li><li>Years: {year_of(3) + 1} to any</li>"
    assert check_turn(3, 2, _chat(*own[:2]), state) == []
    assert check_turn(3, 3, _chat(*own[:2]), state)                                   # wrong turn count
    assert check_turn(3, 2, _chat(own[0], script(4, 5)[0]), state)                    # someone else's message
    assert check_turn(3, 2, _chat(*own[:2]), f"Turn 2 Years: {year_of(5)} to any")    # someone else's year
    assert check_turn(3, 2, _chat(*own[:2]), "Turn 2")                                # their year is lost


def test_check_store_flags_mixed_conversations(tmp_path):
    store = Store(tmp_path / "c.sqlite")
    for person in range(2):
        cid = store.start_conversation()
        for text in script(person, 3):
            store.log_turn(cid, text, "r", "recommend", [], {})
    assert check_store(tmp_path / "c.sqlite", 2, 3) == []
    store.log_turn(cid, script(0, 3)[0], "r", "recommend", [], {})
    assert check_store(tmp_path / "c.sqlite", 2, 3)


def test_pct():
    assert pct([3, 1, 2, 4, 5], 0.5) == 3 and pct([1, 2, 3, 4, 5], 0.95) == 5


def test_the_server_command_is_all_strings_and_passes_the_llm_choice(tmp_path):
    from app.eval.loadtest import parse_args, server_command
    cmd = server_command(parse_args(["--data-dir", str(tmp_path), "--no-llm"]), 7001, tmp_path / "c.sqlite")
    assert all(isinstance(c, str) for c in cmd) and "--no-llm" in cmd and cmd[cmd.index("--port") + 1] == "7001"
    cmd = server_command(parse_args(["--llm", "smollm2-135m", "--llm-backend", "llamacpp"]), 7001, tmp_path / "c")
    assert cmd[cmd.index("--llm") + 1] == "smollm2-135m" and cmd[-2:] == ["--llm-backend", "llamacpp"]
    assert "--no-llm" not in server_command(parse_args([]), 7001, tmp_path / "c")    # the app's default LLM
