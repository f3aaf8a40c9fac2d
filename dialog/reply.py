"""Replies: a template writer (no LLM) and an LLM writer whose output is checked against the
chosen items.

The LLM never decides which items exist: it is handed the chosen catalogue items and their
reasons, and ``check_reply`` verifies that the reply names every chosen title and no other
catalogue title (or anything quoted that is not a chosen title). A failing reply is regenerated
once, then replaced by the template reply.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator

from retrieval.titles import normalize_title

OPENERS = ("Here are a few you might like:", "Some picks for you:", "Try these:",
           "A few ideas:", "How about these?")


@dataclass
class ReplyItem:
    item_id: int
    title: str
    year: int | None
    reason: str

    @property
    def display(self) -> str:
        return f"{self.title} ({self.year})" if self.year else self.title


def template_reply(items: list[ReplyItem], notes: list[str], turn: int = 0, intro: str | None = None) -> str:
    """The deterministic reply: notes, an opener, one line per item with its reason."""
    lines = [n for n in notes if n]
    if items:
        if intro is None:
            lines.append(OPENERS[turn % len(OPENERS)])
        elif intro:
            lines.append(intro)
        lines += [f"{i + 1}. {it.display} — {it.reason}" for i, it in enumerate(items)]
        lines.append("Tell me if you've seen any, or what to change.")
    return "\n".join(lines)


def explain_reply(items: list[ReplyItem]) -> str:
    return "\n".join(f"{it.display}: {it.reason}." for it in items) or "I haven't suggested anything yet."


def _title_forms(title: str) -> list[str]:
    """A title and its shorter forms a writer may use: before a subtitle or a parenthesis."""
    forms = [title]
    for sep in (" (", ": ", " - "):
        head = title.split(sep)[0].strip()
        if len(head) >= 3 and head not in forms:
            forms.append(head)
    return forms


class ReplyChecker:
    """Finds catalogue titles named in a reply (through the title finder) and compares them with
    the chosen items."""

    def __init__(self, finder):
        self.finder = finder

    def check(self, reply: str, items: list[ReplyItem], user_text: str = "") -> list[str]:
        """Problems with a reply; empty when it names exactly the chosen items (titles the person
        named in ``user_text`` may be echoed)."""
        problems = []
        echoed, _ = self.finder.find(user_text) if user_text else ([], [])
        echo_forms = [f for m in echoed for f in _title_forms(m.text)]
        norm_reply = " " + normalize_title(reply) + " "
        chosen_keys = {normalize_title(f) for it in items for f in _title_forms(it.title)}
        for it in items:
            if not any(" " + normalize_title(f) + " " in norm_reply for f in _title_forms(it.title)):
                problems.append(f"does not name {it.display}")
        # Blank out the chosen titles (and their short forms), then look for any other title.
        rest = reply
        for form in sorted([f for it in items for f in _title_forms(it.title)] + echo_forms, key=len, reverse=True):
            rest = re.sub(re.escape(form), " ", rest, flags=re.I)
        for q in re.findall(r"[\"“*_]{1,2}([^\"”*_\n]{2,80})[\"”*_]{1,2}", rest):
            if normalize_title(q) not in chosen_keys and not re.fullmatch(r"[\W\d]*", q):
                problems.append(f"names {q!r}, which is not one of the chosen movies")
        mentions, _ = self.finder.find(rest)
        for m in mentions:
            if m.item_id is not None and m.score >= 0.95 and len(m.text.split()) >= 2 \
                    and m.item_id not in {it.item_id for it in items}:
                problems.append(f"names {m.text!r}, which is not one of the chosen movies")
        return problems


REPLY_SYSTEM = ("You recommend movies. Write one friendly sentence, then each listed movie on its own line "
                "with a reason of at most 8 words, e.g. 'Alien (1979) - tense space horror'. Name no other movie.")


def reply_messages(user_text: str, items: list[ReplyItem], notes: list[str]):
    from langchain_core.messages import HumanMessage, SystemMessage

    listing = "\n".join(f"{it.display}: {it.reason.split(';')[0]}" for it in items)
    note = ("Also say: " + " ".join(notes)[:200] + "\n") if notes else ""
    return [SystemMessage(REPLY_SYSTEM),
            HumanMessage(f"Request: {user_text[:200]}\n{note}Movies:\n{listing}")]


INTRO_SYSTEM = ("You write only the first sentence of a movie recommender's reply; the list of movies is added "
                "after it automatically. Write one short, friendly sentence (at most 15 words) about the "
                "person's request. Never write any movie title. Example: 'A funny sci-fi night coming right "
                "up - these should hit the spot!'")


def intro_messages(user_text: str, items: list[ReplyItem], notes: list[str]):
    from langchain_core.messages import HumanMessage, SystemMessage
    note = ("Also say: " + " ".join(notes)[:200] + "\n") if notes else ""
    return [SystemMessage(INTRO_SYSTEM), HumanMessage(f"Request: {user_text[:200]}\n{note}")]


def named_titles_strict(text: str, titles) -> list[str]:
    """Every run of capitalised words (and each tail of it) that is exactly a catalogue title:
    strict, for text that should name no movie at all."""
    found = []
    for m in re.finditer(r"[A-Z0-9][\w'’-]*(?:\s+(?:of|the|a|and|in|on|to|[A-Z0-9][\w'’-]*))*", text):
        words = m.group(0).split()
        for i in range(len(words)):
            for j in range(len(words), i, -1):
                span = " ".join(words[i:j])
                if len(normalize_title(span)) < 4:
                    continue
                r = titles.resolve(span)
                if r.item is not None and r.item.score >= 0.97 or (r.candidates and r.candidates[0].score >= 0.97):
                    found.append(span)
                    break
    return found


class LLMReplyWriter:
    """Writes replies with a chat model, streaming; checked; regenerated once; then the template.

    Modes:
      "full"   the LLM writes the whole reply: the chosen movies, one line each with a reason. Every
               chosen title must appear and no other title may (``ReplyChecker``).
      "intro"  (default: it fits the CPU latency budget) the LLM writes one friendly opening sentence,
               checked to name no movie, followed by the template's lines for the chosen movies.

    Args:
        chat: a LangChain chat model with ``stream`` (``dialog.llm.LocalChatModel``).
        checker: ``ReplyChecker``.
        mode: "intro" or "full".
        max_new_tokens: generation budget per reply (default 32 for "intro", 150 for "full").
    """

    def __init__(self, chat, checker: ReplyChecker, mode: str = "intro", max_new_tokens: int | None = None):
        if mode not in ("intro", "full"):
            raise ValueError(f"reply mode must be 'intro' or 'full', got {mode!r}")
        self.chat = chat
        self.checker = checker
        self.mode = mode
        self.max_new_tokens = max_new_tokens or (32 if mode == "intro" else 150)

    def stream(self, user_text: str, items: list[ReplyItem], notes: list[str], turn: int,
               log: list[str]) -> Iterator[str]:
        """Yield reply chunks as generated; the generator's return value is the final, checked reply
        (a failing draft is regenerated once, then replaced by the template)."""
        intro = self.mode == "intro"
        messages = intro_messages(user_text, items, []) if intro else reply_messages(user_text, items, notes)
        for attempt in range(2):
            text = ""
            # the retry samples (seeded), so it is not the same greedy text again
            for chunk in self.chat.stream(messages, max_new_tokens=self.max_new_tokens, seed=attempt,
                                          do_sample=attempt > 0):
                piece = getattr(chunk, "content", str(chunk))
                if intro and "\n" in text.strip() + piece:
                    piece = piece.split("\n")[0]       # one sentence: stop at the first line break
                    text += piece
                    if attempt == 0:
                        yield piece
                    break
                text += piece
                if attempt == 0:
                    yield piece
            text = text.strip()
            if intro:
                text = text.strip("\"'“”‘’ ")          # a sentence wrapped in quotes is not a quoted title
                problems = [p for p in self.checker.check(text, items, user_text) if not p.startswith("does not name")]
                problems += [f"names {t!r}" for t in named_titles_strict(text, self.checker.finder.titles)]
                problems += [f"names {it.display}" for it in items
                             if normalize_title(it.title) and f" {normalize_title(it.title)} " in f" {normalize_title(text)} "]
                if not text:
                    problems.append("empty")
                if not problems:
                    log.append(f"reply: LLM intro attempt {attempt + 1} passed the check")
                    tail = "\n" + template_reply(items, notes, turn, intro="")
                    if attempt == 0:
                        yield tail
                    return text + tail
            else:
                problems = self.checker.check(text, items, user_text)
                if not problems:
                    log.append(f"reply: LLM attempt {attempt + 1} passed the title check")
                    return text
            log.append(f"reply: LLM attempt {attempt + 1} failed the check ({'; '.join(problems[:3])})")
        log.append("reply: used the template")
        return template_reply(items, notes, turn)
