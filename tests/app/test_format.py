"""The page's pure formatters: escaping, message cleaning, cards, state, why view, evaluation tab."""
from __future__ import annotations

import json
from types import SimpleNamespace

from app import format as fmt


def _sugg(**kw):
    base = dict(item_id=3, movielens_id=4, title="Alien", year=1979, genres=["Horror", "Sci-Fi"],
                description="In space no one can hear you scream. " * 20, reason="close to The Thing",
                score=0.9, score_parts={"cf": 0.5, "text": 0.3, "ilm": 0.1})
    base.update(kw)
    return SimpleNamespace(**base)


def test_clean_message_empty_long_and_control_chars():
    assert fmt.clean_message("   \n ")[0] == ""
    assert "Type a message" in fmt.clean_message(None)[1]
    text, notice = fmt.clean_message("x" * 10_000)
    assert len(text) == fmt.MAX_MESSAGE_CHARS and "10,000" in notice
    assert fmt.clean_message("hi\x00\x07 there 😀 映画")[0] == "hi there 😀 映画"
    assert fmt.clean_message("  ok  ") == ("ok", None)


def test_plain_markdown_shows_html_and_markdown_literally():
    out = fmt.plain_markdown("<script>alert(1)</script> **b** [x](y)")
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert fmt.plain_markdown("you've \"seen\" it") == "you've \"seen\" it"
    assert r"\*\*b\*\*" in out and r"\[x\]\(y\)" in out


def test_card_escapes_every_field_and_shortens_description():
    s = _sugg(title="<img src=x onerror=alert(1)>", reason="<b>bold</b>", genres=["<i>g</i>"])
    html = fmt.card_html(s)
    assert "<img" not in html and "<b>" not in html and "<i>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert 'data-item-id="3"' in html
    desc = fmt.card_html(_sugg())
    assert "…" in desc and desc.count("no one can hear") < 10


def test_card_handles_missing_year_and_genre_string():
    html = fmt.card_html(_sugg(year=float("nan"), genres="Drama|Crime", description=""))
    assert "mc-year" not in html and "Drama" in html and "Crime" in html and "mc-desc" not in html


def test_feedback_text_and_title():
    assert fmt.feedback_text("dislike", "Alien", 1979) == "Alien (1979) is not for me"
    assert fmt.feedback_text("seen", "Up", None) == "I have seen Up"


def test_state_html_lists_facts_and_history_escaped():
    html = fmt.state_html("Turn 2, new user\nAvoid: Horror\n", ["<Heat> (1995)"])
    assert html.count("<li>") == 3 and "Avoid: Horror" in html and "&lt;Heat&gt;" in html


def test_why_html_shows_trace_candidates_score_parts_and_ilm_share():
    turn = SimpleNamespace(action="recommend", notice=None,
                           trace=[SimpleNamespace(tool="retrieve", args={"query": "<x>"}, count=40,
                                                  summary="hybrid", ms=3.21)],
                           suggestions=[_sugg()], candidates=[{"item_id": 3, "title": "Alien", "cf": 0.5}])
    html = fmt.why_html(turn, "Turn 1, new user")
    for needle in ("retrieve", "hybrid", "3.2", "Candidates retrieval returned (1)", "ilm", "Turn 1, new user"):
        assert needle in html
    assert "&lt;x&gt;" in html and "<x>" not in html
    assert "11% of the score" in html       # 0.1 / (0.5 + 0.3 + 0.1)
    assert "Ask for something first" in fmt.why_html(None)


def test_ilm_share_without_ilm_part():
    assert fmt.ilm_share({"cf": 1.0}) == "no ILM score in this ranking"


def test_table_html_limits_rows():
    html = fmt.table_html([{"a": i} for i in range(40)], limit=5)
    assert html.count("<tr>") == 6 and "35 more" in html


def test_evaluation_view_reads_reports(tmp_path):
    assert "does not exist" in fmt.evaluation_view(tmp_path / "none")[0]
    assert "No reports" in fmt.evaluation_view(tmp_path)[0]
    (tmp_path / "offline.md").write_text("| model | HR@10 |\n|---|---|\n| sasrec | 0.1 |\n<script>x</script>")
    (tmp_path / "offline.json").write_text(json.dumps({"hr@10": 0.1}))
    (tmp_path / "broken.json").write_text("{")
    (tmp_path / "plot.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    (tmp_path / "ui.png").write_bytes(b"\x89PNG\r\n\x1a\nscreenshot")
    md, html = fmt.evaluation_view(tmp_path)
    assert "| sasrec | 0.1 |" in md and "<script>" not in md
    assert "data:image/png;base64," in html and "plot.png" in html and "ui.png" not in html
    assert "hr@10" in html and "unreadable" in html


def test_error_text_has_no_traceback():
    msg = fmt.error_text(RuntimeError("boom\n  File x.py, line 3"))
    assert "RuntimeError" in msg and "\n" not in msg
