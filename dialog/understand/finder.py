"""Title finding: the movie titles a message names, resolved through the catalogue's ``TitleIndex``.

``TitleFinder.find`` looks in four places, in this order: quoted strings; the words after a trigger
("loved", "seen", "what about"), which also say how the person feels about the title; runs of
capitalised words (judged by the words after them: "Die Hard was boring"); and a message that is
nothing but a title ("Hamlet?"). Only catalogue titles become items; an unknown name right after a
trigger is kept as a mention without an item, so the reply can say it is not in the catalogue.
"""
from __future__ import annotations

import re

from dialog.understand.lexicon import (
    AFTER_TITLE_RE,
    CAP_RUN_RE,
    CLAUSE_END_RE,
    GENERIC_START,
    ORDINALS,
    PRONOUN_STARTS,
    QUOTED_RE,
    TITLE_TRIGGER_RE,
    TRIGGER_KINDS,
    TRIGGER_NEGATED_RE,
    genre_of_word,
)
from dialog.understand.understanding import TitleMention
from retrieval.titles import TitleIndex

LIST_JOINERS = ("and", "or", "&", "plus", "also", "nor")      # "I loved Heat and Fargo"


def _after_title_kind(after: str) -> str | None:
    """"disliked" / "liked" when the words right after a title judge it, else None."""
    m = AFTER_TITLE_RE.match(after)
    return None if m is None else "disliked" if m.group("neg") else "liked"


def _trigger_kind(trigger: str) -> str:
    """What a trigger word says about the title after it: liked, disliked, seen, explain or mention."""
    t = trigger.strip().lower()
    for kind, pattern in TRIGGER_KINDS[:-1]:
        if re.match(pattern, t):
            return kind
    return "liked"


class TitleFinder:
    """Finds title mentions in free text and resolves them through a ``TitleIndex``."""

    def __init__(self, titles: TitleIndex, min_score: float = 0.8, min_score_lower: float = 0.9,
                 max_words: int = 8):
        self.titles = titles
        self.min_score = min_score
        self.min_score_lower = min_score_lower
        self.max_words = max_words

    def resolve(self, text: str, kind: str = "mention") -> TitleMention:
        """One title string -> a mention with the catalogue item (or candidates, or nothing)."""
        res = self.titles.resolve(text, min_score=self.min_score)
        if res.item is not None:
            return TitleMention(text, kind, res.item.item_id, [], res.item.score)
        if res.ambiguous:
            return TitleMention(text, kind, None, [c.item_id for c in res.candidates], res.candidates[0].score)
        return TitleMention(text, kind, None, [], 0.0)

    def _best_prefix(self, words: list[str], explicit: bool) -> tuple[int, TitleMention | None]:
        """The prefix of ``words`` that best names a catalogue title: (n words used, mention).
        The highest score wins; among equal scores the longer prefix."""
        best: tuple[float, int, TitleMention | None] = (0.0, 0, None)
        for n in range(min(len(words), self.max_words), 0, -1):
            span = " ".join(words[:n]).strip(" ,'\"")
            if not span or span.lower() in GENERIC_START or genre_of_word(span) is not None:
                continue
            content = span.split()
            if content[0].lower() in ("the", "a", "an") and len(content) > 1:
                content = content[1:]
            if content[0].lower().strip(",") in GENERIC_START or content[0].lower() in ORDINALS:
                continue
            capital = span[:1].isupper() or span[:1].isdigit()
            if n == 1 and not (capital or explicit):
                continue
            if n == 1 and len(span) < 3:
                continue
            need = self.min_score if (capital or explicit) else self.min_score_lower
            m = self.resolve(span)
            ok = (m.item_id is not None and m.score >= need) or (m.candidates and m.score >= max(need, 0.95))
            if ok and m.score > best[0] + 1e-9:
                best = (m.score, n, m)
            if best[0] >= 1.0:
                break
        return best[1], best[2]

    def find(self, text: str) -> tuple[list[TitleMention], list[tuple[int, int]]]:
        """Title mentions in ``text`` and the character spans they cover."""
        out: list[TitleMention] = []
        spans: list[tuple[int, int]] = []

        def covered(a: int) -> bool:
            return any(s <= a < e for s, e in spans)

        def take(start: int, segment: str, kind: str, explicit: bool) -> None:
            tokens = list(re.finditer(r"\S+", segment))
            i = 0
            while i < len(tokens):
                words = [t.group(0) for t in tokens[i:]]
                n, m = self._best_prefix(words, explicit)
                if m is None:
                    # An unknown capitalised name right after a trigger ("I loved Oppenheimer").
                    if i == 0 and (explicit or words[0][:1].isupper()) and words[0].lower() not in GENERIC_START:
                        run = []
                        for w in words[:4]:
                            if w[:1].isupper() or w[:1].isdigit() or w.lower() in ("of", "the", "and", "a"):
                                run.append(w)
                            else:
                                break
                        name = " ".join(run).strip(" ,'\"")
                        if name and genre_of_word(name) is None:
                            out.append(TitleMention(name, kind))
                            spans.append((start + tokens[0].start(), start + tokens[len(run) - 1].end()))
                    return
                m.kind = kind
                out.append(m)
                spans.append((start + tokens[i].start(), start + tokens[i + n - 1].end()))
                comma = tokens[i + n - 1].group(0).endswith(",")
                i += n
                # continue after "and" / "or" / "," for lists of titles
                if i < len(tokens) and tokens[i].group(0).lower() in LIST_JOINERS:
                    i += 1
                elif not comma:
                    return

        for q in QUOTED_RE.finditer(text):
            before = text[:q.start()].lower()
            kind = "liked"
            trig = list(TITLE_TRIGGER_RE.finditer(before))
            if trig and trig[-1].end() >= len(before) - 2:
                kind = _trigger_kind(trig[-1].group(1))
            m = self.resolve(q.group(1), kind)
            out.append(m)
            spans.append((q.start(), q.end()))
        for t in TITLE_TRIGGER_RE.finditer(text):
            if covered(t.end()):
                continue
            kind = _trigger_kind(t.group(1))
            before = text[max(0, t.start() - 12):t.start()].lower()
            if kind == "liked" and TRIGGER_NEGATED_RE.search(before):
                kind = "disliked"
            rest = text[t.end():]
            end = CLAUSE_END_RE.search(rest)
            segment = rest[: end.start()] if end else rest
            take(t.end(), segment, kind, explicit=False)
        for c in CAP_RUN_RE.finditer(text):
            first = c.group(1).split()[0].lower().rstrip(",")
            verdict = _after_title_kind(text[c.end():])
            # one capitalised word opening the message is usually just a sentence start, unless it is judged
            if covered(c.start()) or (c.start() == 0 and len(c.group(1).split()) == 1 and verdict is None) \
                    or first in PRONOUN_STARTS or first in GENERIC_START:
                continue
            segment = c.group(1)
            before = len(out)
            take(c.start(), segment, "mention", explicit=False)
            # unknown capitalised runs without a trigger are just words, not titles
            if len(out) > before and out[-1].item_id is None and not out[-1].candidates:
                out.pop()
                spans.pop()
            elif len(out) > before and verdict is not None and spans[-1][1] == c.end():
                out[-1].kind = verdict
        if not out and len(text.split()) <= 6:
            # A bare title as the whole message ("Hamlet", "the matrix?").
            whole = text.strip(" .!?\"'")
            if whole and whole.lower() not in GENERIC_START and genre_of_word(whole) is None:
                m = self.resolve(whole, "mention")
                if (m.item_id is not None or m.candidates) and m.score >= self.min_score_lower:
                    out.append(m)
                    spans.append((0, len(text)))
        return out, spans
