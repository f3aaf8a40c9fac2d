"""Pure formatting for the chat page: dialog-manager results in, escaped HTML or Markdown out.

Nothing here touches Gradio, the manager or the disk (except ``evaluation_view``, which reads the
report files it is pointed at). Every string that came from a person, the catalogue or a model is
escaped before it becomes HTML, so a ``<script>`` typed into the chat is shown, never run.
"""
from __future__ import annotations

import base64
import html
import json
import math
import re
from pathlib import Path

MAX_MESSAGE_CHARS = 1000          # longer messages are cut, and the person is told
DESCRIPTION_CHARS = 220           # a card shows the start of the description
FEEDBACK_KINDS = {"like": "Like", "dislike": "Not for me", "seen": "Seen it"}
FEEDBACK_SAID = {"like": "I like {t}", "dislike": "{t} is not for me", "seen": "I have seen {t}"}

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")


def esc(value) -> str:
    """HTML-escape anything (None -> "")."""
    return html.escape("" if value is None else str(value), quote=True)


def plain_markdown(text: str) -> str:
    """Text that a Markdown renderer shows literally: HTML escaped, Markdown punctuation backslashed."""
    return _MD_SPECIAL.sub(r"\\\1", html.escape("" if text is None else str(text), quote=False))


QUEUED_TEXT = "… _(queued: the assistant is finishing another reply; yours comes next)_"


def llm_line_md(llm: str | None, notes: list[str]) -> str:
    """The line under the title that says who writes the replies, and any note about it."""
    who = plain_markdown(llm) if llm else "rules and templates"
    lines = [f"Replies: {who}. Every movie named is checked against the catalogue."]
    lines += [f"**Note:** {plain_markdown(n)}" for n in notes]
    return "\n\n".join(lines)


def clean_message(text) -> tuple[str, str | None]:
    """What the person typed -> (text to send to the manager, a notice for the page or None).

    Strips whitespace and control characters; an empty message gives ("", notice); a message longer
    than ``MAX_MESSAGE_CHARS`` is cut there, with a notice saying so.
    """
    text = "" if text is None else str(text)
    text = "".join(ch for ch in text if ch in "\n\t" or ch.isprintable()).strip()
    if not text:
        return "", "Type a message first, for example: *something like Alien but funnier*."
    if len(text) > MAX_MESSAGE_CHARS:
        return (text[:MAX_MESSAGE_CHARS],
                f"Your message was {len(text):,} characters long; I read the first {MAX_MESSAGE_CHARS:,}.")
    return text, None


def _year(year) -> str:
    if year is None or (isinstance(year, float) and math.isnan(year)):
        return ""
    return str(int(year))


def _genres(genres) -> list[str]:
    if genres is None:
        return []
    if isinstance(genres, str):
        return [g for g in genres.split("|") if g]
    return [str(g) for g in genres]


def title_with_year(title, year) -> str:
    y = _year(year)
    return f"{title} ({y})" if y else str(title)


def shorten(text, limit: int) -> str:
    text = " ".join(str(text or "").split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut.rstrip(",.;:") + "…"


def card_html(s) -> str:
    """One suggestion card (the buttons are Gradio components placed under it)."""
    genres = "".join(f'<span class="mc-genre">{esc(g)}</span>' for g in _genres(s.genres))
    year = _year(s.year)
    desc = shorten(s.description, DESCRIPTION_CHARS)
    return (
        f'<div class="mc-card" data-item-id="{int(s.item_id)}">'
        f'<div class="mc-title">{esc(s.title)}{f" <span class=mc-year>({year})</span>" if year else ""}</div>'
        f'<div class="mc-genres">{genres}</div>'
        + (f'<div class="mc-desc">{esc(desc)}</div>' if desc else "")
        + (f'<div class="mc-reason">{esc(s.reason)}</div>' if s.reason else "")
        + "</div>"
    )


def no_cards_html() -> str:
    return '<div class="mc-empty">Suggestions will appear here.</div>'


def feedback_text(kind: str, title: str, year=None) -> str:
    """What a card button says on the person's behalf, e.g. "Alien (1979) is not for me"."""
    return FEEDBACK_SAID[kind].format(t=title_with_year(title, year))


def state_html(description: str, history: list[str] | None = None) -> str:
    """The dialog state in plain words (``DialogState.describe``), one fact per line."""
    lines = [ln for ln in str(description or "").splitlines() if ln.strip()]
    items = "".join(f"<li>{esc(ln)}</li>" for ln in lines) or "<li>Nothing known yet.</li>"
    out = f'<div class="mc-state"><div class="mc-h">What I know so far</div><ul>{items}</ul>'
    if history:
        out += ('<div class="mc-h">Their MovieLens history (latest)</div><ol class="mc-history">'
                + "".join(f"<li>{esc(h)}</li>" for h in history) + "</ol>")
    return out + "</div>"


def _fmt_num(v) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return esc(v)
    if isinstance(v, int):
        return str(v)
    return "nan" if math.isnan(v) else f"{v:.3f}"


def _cell(v) -> str:
    if isinstance(v, (list, tuple)):
        v = ", ".join(str(x) for x in v[:8]) + (" …" if len(v) > 8 else "")
    elif isinstance(v, dict):
        v = json.dumps(v, default=str)[:200]
    return _fmt_num(v) if isinstance(v, (int, float)) else esc(v)


def table_html(rows: list[dict], columns: list[str] | None = None, limit: int = 30) -> str:
    """A plain HTML table of dict rows (first ``limit``), columns in first-seen order."""
    if not rows:
        return '<p class="mc-muted">none</p>'
    if columns is None:
        columns = []
        for r in rows:
            columns += [k for k in r if k not in columns]
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(r.get(c, ''))}</td>" for c in columns) + "</tr>"
                   for r in rows[:limit])
    more = f'<p class="mc-muted">… and {len(rows) - limit} more</p>' if len(rows) > limit else ""
    return f'<div class="mc-table"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>{more}'


def ilm_share(score_parts: dict) -> str:
    """What the ILM contributed to one score, in words (the parts whose name mentions "ilm")."""
    parts = {k: v for k, v in (score_parts or {}).items() if "ilm" in k.lower()}
    if not parts:
        return "no ILM score in this ranking"
    total = sum(abs(v) for v in score_parts.values() if isinstance(v, (int, float))) or 1.0
    return ", ".join(f"{k} {v:+.3f} ({abs(v) / total:.0%} of the score)" for k, v in parts.items())


def why_html(turn, state_description: str = "") -> str:
    """The "why these?" view of one turn: tools run, dialog state, retrieval candidates, ranking."""
    if turn is None:
        return '<div class="mc-why"><p class="mc-muted">Ask for something first; this view explains the last answer.</p></div>'
    out = ['<div class="mc-why">', f'<p><b>Action:</b> {esc(turn.action)}</p>']
    if getattr(turn, "notice", None):
        out.append(f'<p><b>Notice:</b> {esc(turn.notice)}</p>')
    out.append("<h4>Tools that ran</h4>")
    out.append(table_html([{"tool": t.tool, "args": t.args, "returned": t.count, "summary": t.summary,
                            "ms": round(float(t.ms), 1)} for t in (turn.trace or [])]))
    if state_description:
        out.append("<h4>Dialog state</h4>" + state_html(state_description))
    out.append("<h4>How the ranker ordered the suggestions</h4>")
    rows = []
    for rank, s in enumerate(turn.suggestions or [], 1):
        row = {"#": rank, "movie": title_with_year(s.title, s.year), "score": float(s.score)}
        row.update({k: float(v) for k, v in (s.score_parts or {}).items()})
        row["ILM contribution"] = ilm_share(s.score_parts)
        rows.append(row)
    out.append(table_html(rows))
    cands = list(turn.candidates or [])
    out.append(f"<h4>Candidates retrieval returned ({len(cands)})</h4>")
    out.append(table_html(cands, limit=30))
    out.append("</div>")
    return "".join(out)


def evaluation_view(reports_dir) -> tuple[str, str]:
    """(Markdown, HTML) for the evaluation tab from ``reports_dir``: every *.md report as Markdown,
    every *.json as a collapsed block, every *.png inlined as a data: URI (no file serving needed)."""
    d = Path(reports_dir)
    if not d.is_dir():
        return f"No reports yet: `{esc(d)}` does not exist. Run `make bench` to make some.", ""
    mds = sorted(p for p in d.glob("*.md"))
    jsons = sorted(p for p in d.glob("*.json"))
    pngs = sorted(p for p in d.glob("*.png") if p.name != "ui.png")
    if not (mds or jsons or pngs):
        return f"No reports in `{esc(d)}` yet. Run `make bench` to make some.", ""
    md = []
    for p in mds:
        text = p.read_text(encoding="utf-8", errors="replace")
        md.append(f"### {esc(p.name)}\n\n{esc_md_report(text)}\n")
    parts = []
    for p in pngs:
        b64 = base64.b64encode(p.read_bytes()).decode("ascii")
        parts.append(f'<figure class="mc-fig"><img alt="{esc(p.name)}" src="data:image/png;base64,{b64}">'
                     f"<figcaption>{esc(p.name)}</figcaption></figure>")
    for p in jsons:
        try:
            body = json.dumps(json.loads(p.read_text(encoding="utf-8")), indent=2)[:20000]
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            body = f"(unreadable: {e})"
        parts.append(f"<details><summary>{esc(p.name)}</summary><pre>{esc(body)}</pre></details>")
    return "\n".join(md) or "No Markdown reports.", "".join(parts)


def esc_md_report(text: str) -> str:
    """A Markdown report from our own benchmarks, with any raw HTML neutralised."""
    return text.replace("<", "&lt;").replace(">", "&gt;")


def error_text(exc: BaseException) -> str:
    """A short, traceback-free sentence for the page."""
    msg = " ".join(str(exc).split())[:300] or type(exc).__name__
    return f"Sorry, that went wrong ({type(exc).__name__}: {msg}). Your conversation is kept; try again or start over."
