"""Replies: a template writer (no LLM) and an LLM writer whose output is checked against the
chosen items.

The LLM never decides which items exist. Every title in what it writes is checked against the
chosen catalogue items (``ReplyChecker``): a whole reply must name every chosen title and no other;
an opening sentence may name chosen titles and no other (titles the person named in the same
message may be echoed). A failing text is regenerated once, then replaced by the template reply.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

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


def _names(text: str, item: ReplyItem) -> bool:
    norm = " " + normalize_title(text) + " "
    return any(" " + normalize_title(f) + " " in norm for f in _title_forms(item.title))


_SENTENCE_END = ".!?:;\n—"


def capitalised_titles(text: str, titles, common_words=frozenset()) -> list[tuple[str, list[int]]]:
    """Runs of capitalised words (and the parts of each) that are exactly a catalogue title, with
    the items they may mean: strict, for text that should name no other movie.

    A single word that starts a sentence is capitalised anyway, so when it is a common word
    (``common_words``: "Perfect for a cozy night", "Love it!") it is not taken for a title;
    "Fargo fans will love these" and "The Matrix is..." are."""
    found = []
    for m in re.finditer(r"[A-Z0-9][\w'’-]*(?:\s+(?:of|the|a|and|in|on|to|[A-Z0-9][\w'’-]*))*", text):
        words = m.group(0).split()
        before = text[:m.start()].rstrip(" \t\"'“”‘’*_(")
        sentence_start = not before or before[-1] in _SENTENCE_END
        i = 0
        while i < len(words):
            for j in range(len(words), i, -1):
                span = " ".join(words[i:j])
                if len(normalize_title(span)) < 4 or (i == 0 and j == 1 and sentence_start
                                                      and span.lower() in common_words):
                    continue
                r = titles.resolve(span)
                ids = ([r.item.item_id] if r.item is not None and r.item.score >= 0.97 else
                       [c.item_id for c in r.candidates if c.score >= 0.97] if r.item is None else [])
                if ids:
                    found.append((span, ids))
                    i = j - 1
                    break
            i += 1
    return found


class ReplyChecker:
    """Finds the movie titles in LLM-written text (through the title finder) and compares them
    with the chosen items.

    The rule: every title in the text is checked against the chosen catalogue items; naming any
    other movie is a problem (the writer regenerates once, then falls back to the template). The
    one exception is a title the person named in this very message (an echo: "Loved Jaws? Then
    ..."), which the LLM did not invent.
    """

    def __init__(self, finder):
        self.finder = finder
        self._common_words: frozenset | None = None

    @property
    def common_words(self) -> frozenset:
        """Words written in lower case in the text of at least two catalogue movies."""
        if self._common_words is None:
            counts: Counter = Counter()
            for text in self.finder.titles.catalog.items["text"]:
                counts.update(set(re.findall(r"\b[a-z][a-z'-]+\b", str(text))))
            self._common_words = frozenset(w for w, n in counts.items() if n >= 2)
        return self._common_words

    def check(self, reply: str, items: list[ReplyItem], user_text: str = "") -> list[str]:
        """Problems with a whole reply: a chosen movie it does not name, or any other title."""
        problems = [f"does not name {it.display}" for it in items if not _names(reply, it)]
        return problems + self.other_titles(reply, items, user_text)

    def check_opening(self, text: str, items: list[ReplyItem], user_text: str = "") -> list[str]:
        """Problems with an opening sentence: it may name the chosen movies (or echo the person's),
        and nothing else; any capitalised run of words that is a catalogue title counts."""
        if not text.strip():
            return ["empty"]
        return self.other_titles(text, items, user_text, strict=True)

    def other_titles(self, text: str, items: list[ReplyItem], user_text: str = "",
                     strict: bool = False) -> list[str]:
        """Titles in ``text`` that are neither chosen nor echoed from ``user_text``: quoted strings,
        confident title-finder matches of two or more words, and with ``strict`` also
        ``capitalised_titles``."""
        echoed = self.finder.find(user_text)[0] if user_text else []
        allowed = {it.item_id for it in items}
        allowed |= {m.item_id for m in echoed if m.item_id is not None} | {c for m in echoed for c in m.candidates}
        forms = [f for it in items for f in _title_forms(it.title)] + [f for m in echoed for f in _title_forms(m.text)]
        allowed_keys = {normalize_title(f) for f in forms}
        # Blank out the allowed titles (whole words only), then look for any other title.
        rest = text
        for form in sorted(set(forms), key=len, reverse=True):
            rest = re.sub(r"(?<!\w)" + re.escape(form) + r"(?!\w)", " ", rest, flags=re.I)
        problems = []
        for q in re.findall(r"[\"“*_]{1,2}([^\"”*_\n]{2,80})[\"”*_]{1,2}", rest):
            if normalize_title(q) not in allowed_keys and not re.fullmatch(r"[\W\d]*", q):
                problems.append(f"names {q!r}, which is not one of the chosen movies")
        mentions, _ = self.finder.find(rest)
        for m in mentions:
            if m.item_id is not None and m.score >= 0.95 and len(m.text.split()) >= 2 and m.item_id not in allowed:
                problems.append(f"names {m.text!r}, which is not one of the chosen movies")
        if strict:
            problems += [f"names {span!r}, which is not one of the chosen movies"
                         for span, ids in capitalised_titles(rest, self.finder.titles, self.common_words)
                         if not set(ids) & allowed]
        return list(dict.fromkeys(problems))


REPLY_SYSTEM = ("You recommend movies. Write one friendly sentence, then each listed movie on its own line "
                "with a reason of at most 8 words, e.g. 'Alien (1979) - tense space horror'. Name no other movie.")


def reply_messages(user_text: str, items: list[ReplyItem], notes: list[str]):
    from langchain_core.messages import HumanMessage, SystemMessage

    listing = "\n".join(f"{it.display}: {it.reason.split(';')[0]}" for it in items)
    note = ("Also say: " + " ".join(notes)[:200] + "\n") if notes else ""
    return [SystemMessage(REPLY_SYSTEM),
            HumanMessage(f"Request: {user_text[:200]}\n{note}Movies:\n{listing}")]


# The system text is the same on every turn, so the chat model reads it once (its prefix cache);
# each turn reads only the person's request (``intro_request``): on CPU every prompt token costs
# time (reports/sim_latency_ml-latest-small_intro.md).
INTRO_SYSTEM = ("You are a movie recommender. A list of movies that fit the user's message is shown right "
                "after your sentence. Write only one short, friendly sentence (at most 10 words) introducing "
                "that list. Do not name any movie. Example: Here are some gritty 2000s crime dramas!")
# What of the message the opening's prompt reads. llama.cpp reads a prompt at ~30 tokens/s on 2
# AVX2 cores (reports/llm_backends.md), and everything after the cached system text is read on
# every turn. The opening reads the understood request (``request_summary``, ~8 tokens) when there
# is one; else up to 80 characters of the message (~25 tokens: first token p50 1.23 s, vs 0.95).
INTRO_USER_CHARS = 80


def intro_request(user_text: str, finder=None) -> str:
    """The person's message as the opening's prompt sees it: titles replaced by "it" (a title in
    the prompt invites the LLM to name it, and the opening is about the kind of movie, not which),
    cut to ``INTRO_USER_CHARS`` at a word boundary."""
    text = user_text
    if finder is not None:
        for start, end in sorted(finder.find(text)[1], reverse=True):
            span = text[start:end]
            text = text[:start] + "it" + span[len(span.rstrip(".,;:!?\"'")):] + text[end:]
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) > INTRO_USER_CHARS:
        text = text[:INTRO_USER_CHARS].rsplit(" ", 1)[0]
    return text


def request_summary(c) -> str:
    """What the understood request asks for, in a few words ("sci-fi, comedy; 2010s; dark; for
    kids"), for the opening's prompt: about 8 tokens where the person's message is 20 or more, and
    only what the system understood, so the opening cannot promise what the list does not honour.
    Empty when nothing was understood (the opening then reads the message itself)."""
    parts = []
    if c.include_genres:
        parts.append(", ".join(g.lower() for g in c.include_genres))
    if c.exclude_genres:
        parts.append("no " + ", no ".join(g.lower() for g in c.exclude_genres))
    lo, hi = c.year_min, c.year_max
    if lo is not None and hi is not None and lo % 10 == 0 and hi == lo + 9:
        parts.append(f"{lo}s")
    elif lo is not None and hi is not None:
        parts.append(f"{lo}-{hi}")
    elif lo is not None:
        parts.append(f"after {lo}")
    elif hi is not None:
        parts.append(f"before {hi}")
    if c.moods:
        parts.append(", ".join(c.moods))
    if c.audience:
        parts.append(f"for {c.audience}")
    if c.people:
        parts.append("with or by " + " or ".join(c.people))
    if c.like_items:
        parts.append("like a movie they named")
    return "; ".join(parts)


def intro_messages(request: str):
    from langchain_core.messages import HumanMessage, SystemMessage
    return [SystemMessage(INTRO_SYSTEM), HumanMessage(request)]


_QUOTES = " \t\"'“”‘’"


class Retract(str):
    """Streamed (as an empty string, so plain concatenation is unaffected) when the text streamed so
    far is withdrawn: its draft failed the check, and the final reply comes with the ``Turn``."""


RETRACT = Retract("")


class Queued(str):
    """Streamed (as an empty string) when the reply waits for the LLM, busy with another person's
    reply: a page can say so instead of showing nothing."""


QUEUED = Queued("")


def _queued(chunk) -> bool:
    return bool((getattr(chunk, "response_metadata", None) or {}).get("queued"))


class LLMReplyWriter:
    """Writes replies with a chat model, streaming; checked; regenerated once; then the template.

    Modes:
      "full"   the LLM writes the whole reply: the chosen movies, one line each with a reason. Every
               chosen title must appear and no other title may (``ReplyChecker.check``).
      "intro"  (default: it fits the CPU latency budget, see reports/sim_latency_ml-latest-small_intro.md
               and ..._full.md) the LLM writes one short opening sentence, which may name chosen
               movies and no other (``ReplyChecker.check_opening``), followed by the template's
               lines for the chosen movies.

    In "intro" mode the reply is laid out as the template's: notes, opening, item lines. The
    notes are streamed first and the opening token by token, so everything streamed is the start
    of the final reply unless the first draft fails the check (then the final reply, a checked
    regeneration or the template, replaces what was streamed).

    Args:
        chat: a LangChain chat model with ``stream`` (``dialog.llm.LocalChatModel``).
        checker: ``ReplyChecker``.
        mode: "intro" or "full".
        max_new_tokens: generation budget per reply (default 24 for "intro", 150 for "full").
    """

    def __init__(self, chat, checker: ReplyChecker, mode: str = "intro", max_new_tokens: int | None = None):
        if mode not in ("intro", "full"):
            raise ValueError(f"reply mode must be 'intro' or 'full', got {mode!r}")
        self.chat = chat
        self.checker = checker
        self.mode = mode
        self.max_new_tokens = max_new_tokens or (24 if mode == "intro" else 150)

    def warm_up(self) -> None:
        """Prepare the chat model for this writer's prompt (its prefix cache), if it can."""
        if hasattr(self.chat, "warm_up"):
            msgs = intro_messages("Hi") if self.mode == "intro" else reply_messages("Hi", [], [])
            self.chat.warm_up(msgs)

    @staticmethod
    def _note_truncation(chunk, log: list[str]) -> None:
        meta = getattr(chunk, "response_metadata", None) or {}
        turns, tokens = meta.get("truncated_turns", 0), meta.get("truncated_tokens", 0)
        if turns or tokens:
            log.append(f"reply: the prompt did not fit the LLM's context: left out the "
                             f"{turns} oldest turn(s) and {tokens} token(s)")

    def stream(self, user_text: str, items: list[ReplyItem], notes: list[str], turn: int,
               log: list[str], request: str = "") -> Iterator[str]:
        """Yield reply chunks as generated; the generator's return value is the final, checked reply
        (a failing draft is regenerated once, then replaced by the template). When the streamed
        draft fails, ``RETRACT`` follows it, so a page can take it off the screen at once.
        ``request``: the understood request in a few words (``request_summary``); the "intro"
        opening reads it instead of the message when given."""
        if self.mode == "intro":
            return (yield from self._stream_intro(user_text, items, notes, turn, log, request))
        return (yield from self._stream_full(user_text, items, notes, turn, log))

    def _stream_intro(self, user_text, items, notes, turn, log, request="") -> Iterator[str]:
        head = "".join(n + "\n" for n in notes if n)
        if head:
            yield head
        tail = "\n" + template_reply(items, [], turn, intro="")
        messages = intro_messages(f"Wants: {request}" if request else intro_request(user_text, self.checker.finder))
        for attempt in range(2):
            gen = self._opening(messages, attempt, log)
            while True:
                try:
                    piece = next(gen)
                except StopIteration as stop:
                    text = stop.value
                    break
                if attempt == 0:
                    yield piece
            problems = self.checker.check_opening(text, items, user_text)
            if not problems:
                log.append(f"reply: LLM intro attempt {attempt + 1} passed the check")
                if attempt == 0:
                    yield tail
                return head + text + tail
            log.append(f"reply: LLM intro attempt {attempt + 1} failed the check ({'; '.join(problems[:3])}): {text[:80]!r}")
            if attempt == 0:
                yield RETRACT
        log.append("reply: used the template")
        return template_reply(items, notes, turn)

    def _opening(self, messages, attempt: int, log: list[str]) -> Iterator[str]:
        """The opening sentence, piece by piece as generated, without surrounding quotes or blanks
        (trailing ones are held back until more text follows); returns the whole sentence. It ends
        at the first line break after some text: closing the stream stops generation there. The
        retry samples (seeded), so it is not the same greedy text again."""
        raw, line, sent = "", "", 0
        chunks = self.chat.stream(messages, max_new_tokens=self.max_new_tokens, seed=attempt, do_sample=attempt > 0)
        try:
            for chunk in chunks:
                self._note_truncation(chunk, log)
                if _queued(chunk):
                    yield QUEUED
                    continue
                raw += getattr(chunk, "content", str(chunk))
                body = raw.lstrip()
                line = body.split("\n")[0]
                shown = line.strip(_QUOTES)
                if len(shown) > sent:
                    yield shown[sent:]
                    sent = len(shown)
                if "\n" in body:
                    break
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        return line.strip(_QUOTES)

    def _stream_full(self, user_text, items, notes, turn, log) -> Iterator[str]:
        messages = reply_messages(user_text, items, notes)
        for attempt in range(2):
            text = ""
            for chunk in self.chat.stream(messages, max_new_tokens=self.max_new_tokens, seed=attempt,
                                          do_sample=attempt > 0):
                self._note_truncation(chunk, log)
                if _queued(chunk):
                    if attempt == 0:
                        yield QUEUED
                    continue
                piece = getattr(chunk, "content", str(chunk))
                text += piece
                if attempt == 0:
                    yield piece
            text = text.strip()
            problems = self.checker.check(text, items, user_text)
            if not problems:
                log.append(f"reply: LLM attempt {attempt + 1} passed the title check")
                return text
            log.append(f"reply: LLM attempt {attempt + 1} failed the check ({'; '.join(problems[:3])})")
            if attempt == 0:
                yield RETRACT
        log.append("reply: used the template")
        return template_reply(items, notes, turn)
