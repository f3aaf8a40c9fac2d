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
    COMMON_WORDS,
    FIRST_NAMES,
    GENERIC_START,
    ORDINALS,
    PRONOUN_STARTS,
    QUOTED_RE,
    TITLE_TRIGGER_RE,
    TRIGGER_KINDS,
    TRIGGER_NEGATED_RE,
    YEAR_TITLE_RE,
    genre_of_word,
)
from dialog.understand.understanding import TitleMention
from retrieval.titles import TitleIndex, normalize_title

LIST_JOINERS = ("and", "or", "&", "plus", "also", "nor")      # "I loved Heat and Fargo"
FUZZY_MIN_CHARS = 8          # shorter spans must match a title exactly ("good" is not "The Goods")
YEAR_TOLERANCE = 1           # "Title (2014)": the catalogue year may be one off (festival vs. release)
SMALL_WORDS = {"of", "the", "a", "an", "and", "in", "on", "to", "for", "with", "at", "de", "la", "le", "du"}


def _sentence_start(text: str, pos: int) -> bool:
    """Does the word at ``pos`` open the message or a sentence (so its capital says nothing)?"""
    return re.search(r"(?:^|[.!?:;\n]|^\W+)\W*$", text[:pos]) is not None


def _written_capitalised(span: str) -> bool:
    """Every word but the small ones starts with a capital or a digit ("Yes Man", "Up")."""
    words = span.split()
    return all(w[:1].isupper() or w[:1].isdigit() or w.lower() in SMALL_WORDS for w in words) \
        and (words[0][:1].isupper() or words[0][:1].isdigit())


def weak_title(span: str) -> bool:
    """A span that is a title only with strong evidence: only common words ("them", "the night"),
    a first name ("Paul"), or at most three letters."""
    key = normalize_title(span) or span.lower()
    words = key.split()
    return (not words or all(w in COMMON_WORDS for w in words) or (len(words) == 1 and words[0] in FIRST_NAMES)
            or len(key.replace(" ", "")) <= 3)


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

    def _written_as_title(self, span: str, item_id: int) -> bool:
        """Is ``span`` the catalogue title (or an alternative title) as written, capitals included?"""
        items = self.titles.catalog.items
        names = [items.title.iloc[item_id], *items.alt_titles.iloc[item_id]]
        return span.strip(" ,.!?'\"") in names

    def _acceptable(self, span: str, m: TitleMention, at_start: bool) -> bool:
        """Evidence rules for a span found without quotes or a year: fuzzy matches only for long
        spans; a weak title (common words, a first name, very short) only when written exactly as
        the title with its capitals, not opening a sentence, and never a first name alone."""
        key = normalize_title(span)
        if m.score < 0.97 and len(key) < FUZZY_MIN_CHARS:
            return False
        words = key.split()
        if words and words[0] in FIRST_NAMES and m.score < 0.97:
            return False        # "Stephen King" is not "Stephen King's Silver Bullet"
        if not weak_title(span):
            return True
        if len(words) == 1 and words[0] in FIRST_NAMES:
            return False
        item = m.item_id if m.item_id is not None else (m.candidates[0] if m.candidates else None)
        multi_capital = len(span.split()) > 1 and _written_capitalised(span)
        return item is not None and self._written_as_title(span, item) and (not at_start or multi_capital)

    def _best_prefix(self, words: list[str], explicit: bool, at_start: bool = False) -> tuple[int, TitleMention | None]:
        """The prefix of ``words`` that best names a catalogue title: (n words used, mention).
        The highest score wins; among equal scores the longer prefix. ``at_start``: the first word
        opens a sentence, so its capital is no evidence."""
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
            if n == 1 and len(span) < 2:
                continue
            need = self.min_score if (capital or explicit) else self.min_score_lower
            m = self.resolve(span)
            ok = (m.item_id is not None and m.score >= need) or (m.candidates and m.score >= max(need, 0.95))
            ok = ok and self._acceptable(span, m, at_start)
            if ok and m.score > best[0] + 1e-9:
                best = (m.score, n, m)
            if best[0] >= 1.0:
                break
        return best[1], best[2]

    def _take_year_title(self, text: str, y: re.Match, out: list, spans: list) -> None:
        """A title written with its year ("It Follows (2014)", ReDial's style): the words before the
        year that best match a catalogue title of that year (±1); without one it is a mention
        without an item (a film of another year is not taken for it)."""
        year = int(y.group(1))
        before = text[:y.start()]
        start_limit = max([e for _, e in spans if e <= y.start()], default=0)
        tokens = [t for t in re.finditer(r"\S+", before) if t.start() >= start_limit][-self.max_words:]
        for k in range(len(tokens) - 1, -1, -1):       # not across a sentence end
            if re.search(r"[.!?;]$", tokens[k].group(0)) and k < len(tokens) - 1:
                tokens = tokens[k + 1:]
                break
        best = (0.0, 0, None)
        for n in range(1, len(tokens) + 1):
            span = before[tokens[-n].start():tokens[-1].end()].strip(" ,'\"")
            if not span:
                continue
            for match in self.titles.lookup(f"{span} ({year})", limit=3, min_score=self.min_score):
                if match.year is None or abs(match.year - year) > YEAR_TOLERANCE:
                    continue
                if len(normalize_title(span)) < FUZZY_MIN_CHARS and match.score < 0.97:
                    continue
                k = len(tokens) - n
                if k > 0 and tokens[k - 1].group(0)[:1].isupper() and tokens[k - 1].group(0)[-1:] not in ".!?,;:" \
                        and tokens[k - 1].group(0).lower().strip("'\"") not in PRONOUN_STARTS | COMMON_WORDS:
                    break       # only the end of a longer capitalised name ("Pineapple Express")
                if match.score >= best[0] - 1e-9:       # equal scores: the longer span ("Daddy's Home")
                    best = (match.score, n, match)
                break
        if best[2] is not None:
            s = tokens[-best[1]].start()
            kind = self._kind_before(text, s)
            out.append(TitleMention(text[s:y.end()], kind, best[2].item_id, [], best[2].score))
            spans.append((s, y.end()))
            return
        run = []          # the capitalised words before the year name the unknown title
        for t in reversed(tokens):
            w = t.group(0)
            if w[:1].isupper() or w[:1].isdigit() or (run and w.lower() in SMALL_WORDS):
                run.insert(0, t)
            else:
                break
        while run and run[0].group(0) in SMALL_WORDS:      # "and The Notebook": "The" stays
            run.pop(0)
        if run:
            out.append(TitleMention(text[run[0].start():y.end()], self._kind_before(text, run[0].start())))
            spans.append((run[0].start(), y.end()))

    @staticmethod
    def _kind_before(text: str, pos: int) -> str:
        """What a trigger right before ``pos`` says about the title there ("mention" if none)."""
        before = text[:pos].lower()
        trig = list(TITLE_TRIGGER_RE.finditer(before))
        if trig and trig[-1].end() >= len(before.rstrip()) - 1:
            kind = _trigger_kind(trig[-1].group(1))
            if kind == "liked" and TRIGGER_NEGATED_RE.search(before[max(0, trig[-1].start() - 12):trig[-1].start()]):
                return "disliked"
            return kind
        return "mention"

    def find(self, text: str) -> tuple[list[TitleMention], list[tuple[int, int]]]:
        """Title mentions in ``text`` and the character spans they cover."""
        out: list[TitleMention] = []
        spans: list[tuple[int, int]] = []

        def covered(a: int) -> bool:
            return any(s <= a < e for s, e in spans)

        def take(start: int, segment: str, kind: str, explicit: bool) -> None:
            tokens = list(re.finditer(r"\S+", segment))
            for j, t in enumerate(tokens):      # never across a title found already
                if any(covered(start + p) for p in range(t.start(), t.end())):
                    tokens = tokens[:j]
                    break
            i = 0
            while i < len(tokens):
                if covered(start + tokens[i].start()):
                    return
                words = [t.group(0) for t in tokens[i:]]
                n, m = self._best_prefix(words, explicit, _sentence_start(text, start + tokens[i].start()))
                if m is not None and i + n < len(tokens) and tokens[i + n - 1].group(0)[-1:] not in ",.;:!?" \
                        and tokens[i + n].group(0)[:1].isupper() \
                        and tokens[i + n].group(0).lower().strip(",.!?") not in PRONOUN_STARTS | {"i"}:
                    # the title is only the start of a longer capitalised name ("Paul Walker",
                    # "Queen Latifah"): a person or an unknown title, not this film
                    return
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
                        if name and genre_of_word(name) is None and name.lower() not in FIRST_NAMES:
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

        for y in YEAR_TITLE_RE.finditer(text):
            self._take_year_title(text, y, out, spans)
        for q in QUOTED_RE.finditer(text):
            if covered(q.start()):
                continue
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
            if any(covered(p) for p in range(c.start(), c.end())) or (c.start() == 0 and len(c.group(1).split()) == 1 and verdict is None) \
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
                if (m.item_id is not None or m.candidates) and m.score >= self.min_score_lower \
                        and self._acceptable(whole, m, at_start=len(whole.split()) > 1):
                    out.append(m)
                    spans.append((0, len(text)))
        return out, spans
