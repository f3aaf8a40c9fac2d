"""The Gradio chat page, thin over the dialog manager.

``build_ui(manager, store)`` returns a ``gr.Blocks``; nothing is created at import time and only
``app/main.py`` launches it (with ``launch_options()``: a system-font theme and the page CSS, so
the page asks nothing of any outside address). ``ChatApp`` holds the handlers: each calls one
manager method, logs to the store and hands the result to a pure formatter in ``app/format.py``.

Per-browser-session values live in ``gr.State`` (a ``Session``), so two people never share a
dialog state, suggestions or conversation id.
"""
from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

from app import format as fmt
from dialog.reply import Queued, Retract

log = logging.getLogger(__name__)

CSS = """
.gradio-container { max-width: 1200px !important; }
#mc-title h1 { margin: 0 0 .2em 0; font-size: 1.6em; }
#mc-title p { margin: 0; opacity: .8; }
.mc-cards { gap: 12px; flex-wrap: wrap; }
.mc-cards > .mc-cardcol { flex: 1 1 30% !important; max-width: calc(33.4% - 8px); }
.mc-cardcol { border: 1px solid var(--border-color-primary); border-radius: 10px; padding: 10px !important;
              background: var(--background-fill-secondary); }
.mc-cardcol .mc-buttons { flex-wrap: nowrap; gap: 6px; margin-top: auto; }
.mc-cardcol button { padding: 4px 6px !important; min-width: 0 !important; font-size: .82em !important;
                     white-space: nowrap; }
.mc-card .mc-title { font-weight: 600; font-size: 1.05em; }
.mc-card .mc-year { font-weight: 400; opacity: .75; }
.mc-genres { margin: 4px 0; }
.mc-genre { display: inline-block; font-size: .75em; padding: 1px 7px; margin: 0 4px 3px 0; border-radius: 9px;
            background: var(--color-accent-soft); }
.mc-desc { font-size: .88em; opacity: .85; margin: 4px 0; }
.mc-reason { font-size: .9em; font-style: italic; margin-top: 4px; }
.mc-empty, .mc-muted { opacity: .7; font-size: .9em; }
.mc-state ul, .mc-state ol { margin: 2px 0 8px 1.2em; padding: 0; }
.mc-h { font-weight: 600; margin-top: 4px; }
.mc-table { overflow-x: auto; }
.mc-table table { border-collapse: collapse; font-size: .85em; }
.mc-table th, .mc-table td { border: 1px solid var(--border-color-primary); padding: 2px 6px; text-align: left;
                             vertical-align: top; max-width: 360px; }
.mc-fig img { max-width: 100%; height: auto; }
#notice { min-height: 1.2em; }
@media (max-width: 900px) { .mc-cards > .mc-cardcol { flex-basis: 45% !important; max-width: calc(50% - 6px); } }
@media (max-width: 640px) {
  .mc-cards > .mc-cardcol { flex-basis: 100% !important; max-width: 100%; }
  .gradio-container { padding: 4px !important; }
  #mc-title h1 { font-size: 1.25em; }
}
"""


def launch_options() -> dict:
    """``launch()`` keyword arguments that style the page (Gradio 6 takes theme and CSS there)."""
    import gradio as gr
    system = ["system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial", "sans-serif"]
    mono = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]
    theme = gr.themes.Soft(primary_hue="indigo", font=system, font_mono=mono)
    return {"theme": theme, "css": CSS, "footer_links": []}


@dataclass
class Session:
    """One browser session: its dialog state, stored conversation, last turn and cards on screen."""
    state: Any
    conversation_id: str | None = None
    turn: Any = None
    cards: list = field(default_factory=list)        # the Suggestions whose cards are on screen
    history: list[str] = field(default_factory=list)  # a returning MovieLens user's history


def gr_skip():
    """Leave an output as it is (Gradio's ``skip``), imported late like the rest of Gradio."""
    import gradio as gr
    return gr.skip()


def _cards_value(suggestions) -> list[dict]:
    """The plain data the card area renders from (compared by value to decide re-rendering)."""
    return [{"item_id": int(s.item_id), "title": str(s.title), "year": fmt._year(s.year), "html": fmt.card_html(s)}
            for s in suggestions]


class ChatApp:
    """The page's handlers, testable without a browser. Each returns (or yields) the values of its
    event's outputs in ``build_ui``; the session is the one from ``gr.State`` and is returned updated."""

    def __init__(self, manager, store=None, meta: dict | None = None):
        self.manager = manager
        self.store = store
        self.meta = meta or {}

    # -- sessions ---------------------------------------------------------------------------
    def new_session(self, user_id: int | None = None) -> Session:
        history = self.manager.user_history(user_id) if user_id is not None else []
        return Session(state=self.manager.new_state(user_id), history=list(history))

    def _panels(self, session: Session, notice: str | None = None):
        """(state panel, why panel, notice) for a session."""
        description = session.state.describe(self.manager.catalog)
        return (fmt.state_html(description, session.history),
                fmt.why_html(session.turn, description),
                notice or "")

    def _save(self, session: Session, fn, *args) -> str | None:
        """Run one store write; a failing disk costs the log, not the conversation."""
        if self.store is None:
            return None
        try:
            if session.conversation_id is None:
                session.conversation_id = self.store.start_conversation(session.state.user_id, self.meta)
            fn(session.conversation_id, *args)
        except sqlite3.Error as e:
            log.exception("store write failed")
            return f"(This turn could not be saved: {e}.)"
        return None

    def _apply(self, session: Session, turn, user_text: str, ms: float) -> str | None:
        session.state = turn.state
        session.turn = turn
        if turn.suggestions or turn.action in ("recommend", "refine"):   # "ask" and "notice" keep the cards
            session.cards = list(turn.suggestions)
        return self._save(session, self.store.log_turn if self.store else None, user_text, turn.reply,
                          turn.action, [{"item_id": int(s.item_id), "title": s.title, "score": float(s.score)}
                                        for s in turn.suggestions], turn.state.to_dict(), turn.notice, ms)

    # -- events -----------------------------------------------------------------------------
    def page_load(self, session):
        session = session or self.new_session()
        return (session, _cards_value(session.cards)) + self._panels(session)

    def send(self, text, chat: list | None, session: Session | None):
        """Chat submit: yields (textbox, chat, session, cards, state, why, notice) while streaming.

        Only the first yield clears the textbox: what the person types while the reply streams stays.
        """
        session = session or self.new_session()
        chat = list(chat or [])
        text, notice = fmt.clean_message(text)
        if not text:
            yield (gr_skip(), list(chat), session, _cards_value(session.cards)) + self._panels(session, notice)
            return
        chat += [{"role": "user", "content": fmt.plain_markdown(text)}, {"role": "assistant", "content": "…"}]
        yield ("", list(chat), session, _cards_value(session.cards), fmt.state_html(
            session.state.describe(self.manager.catalog), session.history), fmt.why_html(session.turn), notice or "")
        t0, reply, turn = time.perf_counter(), "", None
        try:
            for part in self.manager.stream(session.state, text):
                if isinstance(part, Retract):     # the streamed draft failed its check: off the screen
                    reply = ""
                    chat[-1] = {"role": "assistant", "content": "…"}
                    yield (gr_skip(), list(chat), session, _cards_value(session.cards)) + self._panels(session, notice)
                elif isinstance(part, Queued):     # the LLM is writing someone else's reply first
                    if not reply:
                        chat[-1] = {"role": "assistant", "content": fmt.QUEUED_TEXT}
                        yield (gr_skip(), list(chat), session, _cards_value(session.cards)) + self._panels(session, notice)
                elif isinstance(part, str):
                    reply += part
                    chat[-1] = {"role": "assistant", "content": fmt.plain_markdown(reply)}
                    yield (gr_skip(), list(chat), session, _cards_value(session.cards)) + self._panels(session, notice)
                else:
                    turn = part
            if turn is None:
                raise RuntimeError("the dialog manager ended its reply without a result")
        except Exception as e:  # the page must stay usable whatever the manager does
            log.exception("manager.stream failed")
            chat[-1] = {"role": "assistant", "content": fmt.plain_markdown(fmt.error_text(e))}
            yield (gr_skip(), list(chat), session, _cards_value(session.cards)) + self._panels(session, notice)
            return
        saved = self._apply(session, turn, text, (time.perf_counter() - t0) * 1000)
        chat[-1] = {"role": "assistant", "content": fmt.plain_markdown(turn.reply)}
        notice = " ".join(n for n in (notice, turn.notice and fmt.plain_markdown(turn.notice), saved) if n)
        yield (gr_skip(), list(chat), session, _cards_value(session.cards)) + self._panels(session, notice)

    def feedback(self, chat, session: Session | None, item_id: int, kind: str):
        """A card button: (chat, session, cards, state, why, notice)."""
        chat = list(chat or [])
        session = session or self.new_session()
        card = next((s for s in session.cards if int(s.item_id) == int(item_id)), None)
        if card is None:
            return (chat, session, _cards_value(session.cards)) + self._panels(
                session, "That card was from before you started over, so nothing changed.")
        said = fmt.feedback_text(kind, card.title, card.year)
        t0 = time.perf_counter()
        try:
            turn = self.manager.feedback(session.state, int(item_id), kind)
        except Exception as e:  # keep the page usable; the message says what happened
            log.exception("manager.feedback failed")
            return (chat, session, _cards_value(session.cards)) + self._panels(session, fmt.error_text(e))
        before = [int(s.item_id) for s in session.cards]
        saved = self._apply(session, turn, said, (time.perf_counter() - t0) * 1000)
        if kind != "like" and [int(s.item_id) for s in session.cards] == before:
            session.cards = [s for s in session.cards if int(s.item_id) != int(item_id)]
        saved = self._save(session, self.store.log_feedback if self.store else None, int(item_id), kind,
                           card.title) or saved
        chat += [{"role": "user", "content": fmt.plain_markdown(said)},
                 {"role": "assistant", "content": fmt.plain_markdown(turn.reply)}]
        notice = " ".join(n for n in (turn.notice and fmt.plain_markdown(turn.notice), saved) if n)
        return (chat, session, _cards_value(session.cards)) + self._panels(session, notice)

    def start_over(self, session: Session | None = None):
        """(chat, session, cards, state, why, notice) for a fresh new person."""
        session = self.new_session()
        return ([], session, []) + self._panels(session, "Started over as a new person.")

    def start_as_user(self, user_value, session: Session | None = None):
        """Start from a MovieLens user's history; a bad id keeps the current conversation."""
        session = session or self.new_session()
        try:
            user_id = int(str(user_value).strip())
        except (TypeError, ValueError):
            return (gr_skip(), session, _cards_value(session.cards)) + self._panels(
                session, f"“{fmt.plain_markdown(str(user_value or '')[:40])}” is not a MovieLens user id; "
                         "pick one from the list.")
        try:
            new = self.new_session(user_id)
        except (ValueError, KeyError, IndexError) as e:
            why = " ".join(str(e.args[0] if e.args else e).split())[:200]
            return (gr_skip(), session, _cards_value(session.cards)) + self._panels(
                session, f"Could not start as MovieLens user {user_id}: {fmt.plain_markdown(why)}")
        notice = f"Started as MovieLens user {user_id}; their history is on the right. Ask for something."
        return ([], new, []) + self._panels(new, notice)

    def evaluation(self, reports_dir):
        return fmt.evaluation_view(reports_dir)


def build_ui(manager, store=None, *, user_ids=None, reports_dir="reports", meta: dict | None = None,
             title: str = "Movie chat"):
    """The page. ``user_ids``: MovieLens users one may start from (None: type an id)."""
    import gradio as gr

    app = ChatApp(manager, store, meta)
    with gr.Blocks(title=title, analytics_enabled=False) as demo:
        session = gr.State(None)
        cards = gr.State([])
        gr.Markdown(f"# {fmt.esc(title)}\nTell me what you feel like watching: a genre, a mood, a movie "
                    "you liked, a decade. Then use the buttons on the suggestions.", elem_id="mc-title")
        gr.Markdown(fmt.llm_line_md(app.meta.get("llm"), getattr(manager, "notes", [])), elem_id="mc-llm")
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3, min_width=320):
                        chatbot = gr.Chatbot(height=380, label="Conversation", feedback_options=None,
                                             buttons=["copy"], elem_id="chatbot", placeholder="Ask for a movie to start.")
                        with gr.Row(equal_height=True):
                            msg = gr.Textbox(show_label=False, placeholder="e.g. something like Alien but funnier",
                                             scale=5, lines=1, max_lines=4, elem_id="msg", autofocus=True)
                            send = gr.Button("Send", variant="primary", scale=1, min_width=80, elem_id="send")
                        notice = gr.Markdown(elem_id="notice")

                        @gr.render(inputs=[cards])
                        def _cards(values):
                            if not values:
                                gr.HTML(fmt.no_cards_html(), elem_id="cards-empty")
                                return
                            with gr.Row(elem_classes="mc-cards", elem_id="cards", equal_height=True):
                                for v in values:
                                    with gr.Column(min_width=210, elem_classes="mc-cardcol"):
                                        gr.HTML(v["html"])
                                        with gr.Row(elem_classes="mc-buttons"):
                                            for kind, label in fmt.FEEDBACK_KINDS.items():
                                                b = gr.Button(label, size="sm", min_width=40, scale=1,
                                                              elem_classes=f"mc-{kind}")
                                                b.click(lambda c, s, _i=v["item_id"], _k=kind: app.feedback(c, s, _i, _k),
                                                        [chatbot, session], FEEDBACK_OUT, api_visibility="private")
                    with gr.Column(scale=2, min_width=260):
                        with gr.Group():
                            restart = gr.Button("Start over (new person)", size="sm", elem_id="start-over")
                            with gr.Row(equal_height=True):
                                user_pick = gr.Dropdown(
                                    choices=[str(u) for u in (user_ids if user_ids is not None else [])],
                                    value=None, allow_custom_value=True, label="…or start as MovieLens user",
                                    scale=3, min_width=120, elem_id="user-pick")
                                as_user = gr.Button("Start as user", size="sm", scale=1, min_width=90, elem_id="as-user")
                        state_panel = gr.HTML(elem_id="state-panel")
            with gr.Tab("Why these?", id="why"):
                why = gr.HTML(elem_id="why")
            with gr.Tab("Evaluation", id="evaluation"):
                with gr.Row():
                    reload_reports = gr.Button("Reload reports", size="sm", scale=0, min_width=140)
                eval_md = gr.Markdown(elem_id="eval-md")
                eval_html = gr.HTML(elem_id="eval-html")

        FEEDBACK_OUT = [chatbot, session, cards, state_panel, why, notice]
        demo.load(app.page_load, [session], [session, cards, state_panel, why, notice], api_visibility="private")
        demo.load(lambda: app.evaluation(reports_dir), None, [eval_md, eval_html], api_visibility="private")
        reload_reports.click(lambda: app.evaluation(reports_dir), None, [eval_md, eval_html],
                             api_visibility="private")
        gr.on([msg.submit, send.click], app.send, [msg, chatbot, session],
              [msg, chatbot, session, cards, state_panel, why, notice], api_name="chat", trigger_mode="always_last")
        restart.click(app.start_over, [session], FEEDBACK_OUT, api_name="start_over")
        chatbot.clear(app.start_over, [session], FEEDBACK_OUT, api_visibility="private")
        as_user.click(app.start_as_user, [user_pick, session], FEEDBACK_OUT, api_name="start_as_user")
    return demo
