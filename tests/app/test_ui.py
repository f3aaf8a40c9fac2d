"""The page's handlers (``ChatApp``) and ``build_ui`` with a fake manager, without a browser."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from app import format as fmt
from app.store import Store
from app.ui import ChatApp, build_ui

REPO = Path(__file__).resolve().parents[2]


def _last(gen):
    out = None
    for out in gen:
        pass
    return out


def _send(app, text, chat=None, session=None):
    msg, chat, session, cards, state, why, notice = _last(app.send(text, chat, session))
    return chat, session, cards, state, why, notice


def test_importing_the_ui_creates_nothing():
    code = "import sys, app.ui, app.format; print('gradio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_send_streams_then_shows_reply_cards_and_state(fake_manager, tmp_path):
    fake_manager.delay = 0
    store = Store(tmp_path / "c.sqlite")
    app = ChatApp(fake_manager, store)
    steps = list(app.send("something funny", [], None))
    assert steps[0][0] == "" and steps[0][1][-1]["content"] == "…"          # textbox cleared, placeholder shown
    assert len(steps) > 3                                                   # reply arrived in pieces
    assert all(step[0] != "" for step in steps[1:])       # later steps leave what is typed meanwhile alone
    _, chat, session, cards, state, why, notice = steps[-1]
    assert chat[-1]["role"] == "assistant" and "Here are some ideas" in chat[-1]["content"]
    assert [c["title"] for c in cards] == ["Toy Story", "Toy Story 2", "The Matrix"]
    assert "Turn 1" in state and "Last suggested" in state and "retrieve" in why
    assert store.counts() == {"conversations": 1, "turns": 1, "feedback": 0}


def test_a_withdrawn_draft_leaves_the_screen_at_once(fake_manager):
    fake_manager.delay = 0
    steps = list(ChatApp(fake_manager).send("a draft please", [], None))
    shown = [step[1][-1]["content"] for step in steps]
    at = next(i for i, text in enumerate(shown) if "Casablanca" in text)
    assert shown[at + 1] == "…"                                        # withdrawn before the real reply streams
    assert "Casablanca" not in shown[-1] and "Here are some ideas" in shown[-1]


def test_a_queued_reply_says_so_until_it_streams(fake_manager):
    fake_manager.delay = 0
    shown = [step[1][-1]["content"] for step in ChatApp(fake_manager).send("queued please", [], None)]
    at = shown.index(fmt.QUEUED_TEXT)
    assert shown[0] == "…" and at >= 1 and "Here are some ideas" in shown[-1]
    assert fmt.QUEUED_TEXT not in shown[at + 1:]


def test_bad_input_keeps_the_page_usable(fake_manager):
    app = ChatApp(fake_manager)
    chat, session, cards, state, why, notice = _send(app, "   ")
    assert chat == [] and "Type a message" in notice and session.state.turn == 0
    chat, session, cards, *_, notice = _send(app, "y" * 10_000, chat, session)
    assert "first 1,000" in notice and session.state.messages[0]["text"] == "y" * 1000
    chat, session, *_ = _send(app, "<script>alert(1)</script> 😀 日本の映画", chat, session)
    assert "&lt;script&gt;" in chat[-2]["content"] and "<script>" not in chat[-2]["content"]
    assert "😀 日本の映画" in chat[-2]["content"]
    turn_before = session.state.turn
    chat, session, cards, state, why, notice = _send(app, "please fail", chat, session)
    assert "Sorry, that went wrong" in chat[-1]["content"] and session.state.turn == turn_before
    chat, session, *_ = _send(app, "still here?", chat, session)
    assert session.state.turn == turn_before + 1


def test_not_for_me_changes_state_and_suggestions(fake_manager, tmp_path):
    store = Store(tmp_path / "c.sqlite")
    app = ChatApp(fake_manager, store)
    chat, session, cards, *_ = _send(app, "anything")
    first = cards[0]
    chat, session, new_cards, state, why, notice = app.feedback(chat, session, first["item_id"], "dislike")
    assert "Disliked: Toy Story (1995)" in state
    assert first["item_id"] not in [c["item_id"] for c in new_cards] and new_cards
    assert "Toy Story \\(1995\\) is not for me" in chat[-2]["content"]
    assert store.counts()["feedback"] == 1
    assert store.conversations()[0]["feedback"][0]["kind"] == "dislike"


def test_card_button_after_start_over_changes_nothing(fake_manager):
    app = ChatApp(fake_manager)
    chat, session, cards, *_ = _send(app, "anything")
    old_item = cards[0]["item_id"]
    chat, session, cards, state, why, notice = app.start_over(session)
    assert chat == [] and cards == [] and "Nothing known yet" in state and "Started over" in notice
    chat, session2, cards, state, why, notice = app.feedback(chat, session, old_item, "dislike")
    assert "before you started over" in notice and session2.state.disliked == []


def test_start_as_user_shows_history_and_rejects_bad_ids(fake_manager):
    app = ChatApp(fake_manager)
    chat, session, cards, state, why, notice = app.start_as_user("3", None)
    assert session.state.user_id == 3 and "MovieLens history" in state and "Started as MovieLens user 3" in notice
    _, kept, _, _, _, notice = app.start_as_user("99", session)
    assert kept is session and "not in this data set" in notice
    _, kept, _, _, _, notice = app.start_as_user("<b>x</b>", session)
    assert kept is session and "not a MovieLens user id" in notice and "<b>" not in notice


def test_two_sessions_do_not_share_state(fake_manager):
    app = ChatApp(fake_manager)
    _, a, *_ = _send(app, "movies after 1990")
    _, b, *_ = _send(app, "movies after 1970")
    _, a, *_ = _send(app, "more", None, a)
    assert (a.state.turn, b.state.turn) == (2, 1)
    assert (a.state.constraints.year_min, b.state.constraints.year_min) == (1990, 1970)


def test_build_ui_wires_the_chat_endpoint(fake_manager, tmp_path):
    import gradio as gr
    demo = build_ui(fake_manager, Store(tmp_path / "c.sqlite"), user_ids=[1, 2], reports_dir=tmp_path)
    assert isinstance(demo, gr.Blocks)
    names = {dep.get("api_name") for dep in demo.config["dependencies"]}
    assert {"chat", "start_over", "start_as_user"} <= names
