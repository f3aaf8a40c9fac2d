"""Deterministic message understanding: ``parse_message`` turns one message into an
``Understanding`` with rules over the lexicon (``dialog.understand.lexicon``).

Titles are found first (``TitleFinder``) and blanked out of the text, so "Star Wars" is not the
genre war and "Alien" not sci-fi. Then, on what is left: references to the last suggestions ("more
like the second one", "seen it", "none of these"), explanation requests, release years and decades,
genres (with negation: "no horror"), audience, moods and "like X but Y"; what remains, without
negated phrases, is the text query for retrieval.
"""
from __future__ import annotations

import re

from dialog.understand.finder import TitleFinder
from dialog.understand.lexicon import (
    AFTER_EXCLUSIVE,
    AFTER_RE,
    AUDIENCE_RE,
    BARE_YEAR_RE,
    BEFORE_EXCLUSIVE,
    BEFORE_RE,
    BETWEEN_RE,
    COMEDY_ALSO_RE,
    DATE_WORDS,
    DECADE_RE,
    DECADE_WORDS,
    DISLIKE_REF_RE,
    EXPLAIN_RE,
    FAMILY_WORDS,
    GENRE_RE,
    INJECTION_RE,
    KIDS_WORDS,
    LIKE_WORD_RE,
    MOOD_RE,
    NEG_RE,
    NEGATED_PHRASE_RE,
    NEGATIVE_RE,
    NONEXISTENT_RE,
    NOT_LIKE_RE,
    NOT_NEW_RE,
    NOT_OLD_RE,
    OLD_RE,
    ORDINAL_RE,
    ORDINALS,
    POSITIVE_RE,
    PRONOUN_REF_RE,
    REACTION_MAX_NAMED,
    RECENT_RE,
    REJECT_ALL_RE,
    RESET_RE,
    SEEN_ALL_RE,
    SEEN_IT_RE,
    SEEN_REF_RE,
    canonical_genre,
)
from dialog.understand.understanding import MAX_YEAR, MIN_YEAR, Understanding


def parse_message(text: str, finder: TitleFinder, catalog_genres: list[str], n_last: int,
                  max_catalog_year: int = 2018) -> Understanding:
    """Deterministic understanding of one message.

    Args:
        text: the message (already truncated).
        finder: title finder over the catalogue.
        catalog_genres: the catalogue's genre names.
        n_last: how many suggestions the last reply showed (for "the second one", "seen it").
        max_catalog_year: the catalogue's latest year ("something recent" is counted back from it).
    """
    u = Understanding()
    if not text.strip():
        return u
    _read_flags(u, text)
    rest = _read_titles(u, text, finder)                    # 1
    low = rest.lower()
    if n_last:
        _read_references(u, low, n_last)                    # 2, 2a
    _read_explanation(u, low)
    rest = _read_years(u, rest, low, max_catalog_year)      # 3
    _read_genres(u, rest, catalog_genres)                   # 4
    _read_audience(u, low)                                  # 5
    _read_moods(u, rest)
    _read_but(u, text, low)
    u.query_text = _query_text(rest, u.injection)           # 6
    return u


# ---- the steps ----------------------------------------------------------------------------------

def _read_flags(u: Understanding, text: str) -> None:
    """0. Prompt injection, a request for a movie that does not exist, start over."""
    u.injection = bool(INJECTION_RE.search(text))
    u.nonexistent = bool(NONEXISTENT_RE.search(text))
    u.reset = bool(RESET_RE.search(text))


def _read_titles(u: Understanding, text: str, finder: TitleFinder) -> str:
    """1. Title mentions, first, so "Star Wars" is not the genre war and "Alien" not sci-fi.

    Returns:
        the text with the catalogue titles blanked out; unknown titles stay in it (the text
        encoder may know something about them).
    """
    u.titles, spans = finder.find(text)
    return _blank(text, [sp for sp, m in zip(spans, u.titles) if m.item_id is not None or m.candidates])


def _read_references(u: Understanding, low: str, n_last: int) -> None:
    """2. References to the last ``n_last`` suggestions: "the second one" liked, disliked, seen or
    to explain; "seen it", "seen them all"; "none of these"."""
    ords = list(ORDINAL_RE.finditer(low))
    for j, m in enumerate(ords):
        word, num = m.group(1), m.group(2)
        pos = ORDINALS[word.lower()] if word else int(num) - 1
        pos = n_last - 1 if pos == -1 else pos
        if not 0 <= pos < n_last:
            continue
        # the words about this suggestion: from the previous one (or the sentence start) to the next one
        start = ords[j - 1].end() if j else 0
        end = min(m.end() + 30, ords[j + 1].start() if j + 1 < len(ords) else len(low))
        clause = re.split(r"[.;!?]", low[start:m.start()])[-1] + low[m.start():end]
        if EXPLAIN_RE.search(clause):
            u.explain_refs.append(pos)
        elif SEEN_REF_RE.search(clause):
            u.seen_refs.append(pos)
        elif LIKE_WORD_RE.search(clause) and not NOT_LIKE_RE.search(clause):
            u.like_refs.append(pos)
        elif DISLIKE_REF_RE.search(clause):
            u.dislike_refs.append(pos)
        else:                       # named without a verdict: "the second one, please"
            u.like_refs.append(pos)
    rest_refs = ORDINAL_RE.sub(" ", low)
    if SEEN_ALL_RE.search(rest_refs):
        u.seen_refs = list(range(n_last))
    elif SEEN_IT_RE.search(rest_refs) and not u.seen_refs:
        u.seen_refs = [0]
    if REJECT_ALL_RE.search(rest_refs) and not (u.like_refs or u.seen_refs):
        u.reject_all = True
    _read_reaction(u, rest_refs, n_last, bool(ords))


def _read_reaction(u: Understanding, low: str, n_last: int, has_ordinals: bool) -> None:
    """2a. A verdict on the last few named movies by pronoun ("loved that one", "those were great",
    "not a fan of it"): all of them are liked / disliked. Only when the last turn named at most
    ``REACTION_MAX_NAMED`` (a person recommending one or two movies, not a list of five, where "it" is
    ambiguous), the message names no title and no position of its own, and no rejection was read."""
    if n_last > REACTION_MAX_NAMED or has_ordinals or u.reject_all or u.like_refs or u.dislike_refs:
        return
    if any(m.item_id is not None or m.candidates for m in u.titles) or not PRONOUN_REF_RE.search(low):
        return
    if NEGATIVE_RE.search(low):
        u.dislike_refs = list(range(n_last))
    elif POSITIVE_RE.search(low) and not NEG_RE.search(low):
        u.like_refs = list(range(n_last))


def _read_explanation(u: Understanding, low: str) -> None:
    """2b. Whether the person asks why (a word like "why", or a title after "tell me about")."""
    if EXPLAIN_RE.search(low) or any(m.kind == "explain" for m in u.titles):
        u.wants_explanation = True


def _read_years(u: Understanding, rest: str, low: str, max_catalog_year: int) -> str:
    """3. Release years: ranges, bounds and decades, else a bare year, else "recent" / "old";
    a year outside ``MIN_YEAR..MAX_YEAR`` is dropped.

    Returns:
        ``rest`` with the year phrases blanked out (so "the 80s" is no mood or query word).
    """
    rest = _read_between(u, rest)
    rest = _read_after(u, rest)
    rest = _read_before(u, rest)
    rest = _read_decades(u, rest)
    if u.year_min is None and u.year_max is None:
        for m in BARE_YEAR_RE.finditer(rest):
            u.year_min = u.year_max = int(m.group(1))
    if u.year_min is None and u.year_max is None:
        _read_age(u, low, max_catalog_year)
    for attr in ("year_min", "year_max"):
        v = getattr(u, attr)
        if v is not None and not MIN_YEAR <= v <= MAX_YEAR:
            setattr(u, attr, None)
    return rest


def _read_between(u: Understanding, rest: str) -> str:
    """3a. "between 1980 and 1990", "1985-1995"."""
    for m in BETWEEN_RE.finditer(rest):
        a, b = [int(x) for x in m.groups() if x]
        u.year_min, u.year_max = min(a, b), max(a, b)
        rest = _blank(rest, [m.span()])
    return rest


def _read_after(u: Understanding, rest: str) -> str:
    """3b. Lower bounds: "after 2000" (from 2001), "since 1990"; "from 1995" is that year and
    "from the 1970s" that decade."""
    for m in AFTER_RE.finditer(rest):
        y = int(m.group(2))
        word = m.group(1).lower()
        if word == "from" and not m.group(3):
            u.year_min, u.year_max = y, y
        elif word == "from":
            u.year_min, u.year_max = y, y + 9
        else:
            u.year_min = y + 1 if word in AFTER_EXCLUSIVE else y
        rest = _blank(rest, [m.span()])
    return rest


def _read_before(u: Understanding, rest: str) -> str:
    """3c. Upper bounds: "before 1980" (up to 1979), "until 1990"; "before the 1990s" is up to 1989
    and "up to the 1990s" up to 1999."""
    for m in BEFORE_RE.finditer(rest):
        y = int(m.group(2))
        word = m.group(1).lower()
        u.year_max = y - 1 if word in BEFORE_EXCLUSIVE else y
        if m.group(3):
            u.year_max = y - 1 if u.year_max < y else y + 9
        rest = _blank(rest, [m.span()])
    return rest


def _read_decades(u: Understanding, rest: str) -> str:
    """3d. Decades: "the 90s", "early eighties", "late 1970s". A negated decade ("nothing from the
    80s") is too fuzzy to turn into a range, so it is skipped and the ranker ignores it."""
    for m in DECADE_RE.finditer(rest):
        bounds = _decade_bounds(m)
        if bounds is None or _negated(rest, m.start()):
            continue
        u.year_min, u.year_max = bounds
        rest = _blank(rest, [m.span()])
    return rest


def _read_age(u: Understanding, low: str, max_catalog_year: int) -> None:
    """3e. Age words without a year: "not too old", "something recent", "not too new", "classic"."""
    if NOT_OLD_RE.search(low):
        u.year_min = max_catalog_year - 25
    elif RECENT_RE.search(low):
        u.year_min = max_catalog_year - 8
    elif NOT_NEW_RE.search(low):
        u.year_max = max_catalog_year - 20
    elif OLD_RE.search(low):
        u.year_max = 1979


def _read_genres(u: Understanding, rest: str, catalog_genres: list[str]) -> None:
    """4. Genre words, each asked for or, when negated ("no horror"), excluded; a rom-com is both
    Romance and Comedy."""
    for m in GENRE_RE.finditer(rest):
        word = m.group(0)
        genre = canonical_genre(word, catalog_genres)
        genres = [genre] if genre else []
        if COMEDY_ALSO_RE.fullmatch(word):
            genres = [canonical_genre("Romance", catalog_genres), canonical_genre("Comedy", catalog_genres)]
        for g in filter(None, genres):
            target = u.exclude_genres if _negated(rest, m.start()) else u.include_genres
            if g not in target:
                target.append(g)


def _read_audience(u: Understanding, low: str) -> None:
    """5a. Who is watching: kids, family, teens, a date or adults."""
    a = AUDIENCE_RE.search(low)
    if a:
        word = (a.group(1) or a.group(2)).lower()
        u.audience = ("kids" if word in KIDS_WORDS else "family" if word in FAMILY_WORDS
                      else "teens" if word.startswith("teen") else "date" if word in DATE_WORDS
                      else "adults")


def _read_moods(u: Understanding, rest: str) -> None:
    """5b. Mood and theme words that are not negated, in order, once each."""
    for m in MOOD_RE.finditer(rest):
        word = m.group(1).lower()
        if word not in u.moods and not _negated(rest, m.start()):
            u.moods.append(word)


def _read_but(u: Understanding, text: str, low: str) -> None:
    """5c. The "but Y" of "like X but Y", when X is a liked or mentioned catalogue title."""
    if re.search(r"\bbut\b", low) and any(t.kind in ("liked", "mention") and t.item_id is not None
                                          for t in u.titles):
        u.but = re.split(r"\bbut\b", text, maxsplit=1, flags=re.I)[1].strip(" .!?")[:200] or None


def _query_text(rest: str, injection: bool) -> str:
    """6. The text query: the message without titles, references, year phrases, negated phrases
    and (after a prompt injection) the sentences that carry it."""
    q = rest
    if injection:
        q = " ".join(sent for sent in re.split(r"(?<=[.!?\n])\s+", q) if not INJECTION_RE.search(sent))
    q = NEGATED_PHRASE_RE.sub(" ", q)
    q = ORDINAL_RE.sub(" ", q)
    q = re.sub(r"[^\w\s'-]", " ", q)
    words = [w for w in q.split() if w.lower().strip("'-") not in QUERY_STOP_WORDS]
    return " ".join(words)


# Words that say nothing about which movie: pronouns, auxiliaries, reactions, chat and request
# words. Left in the query, they match titles made of them ("Yes, I liked them" -> "Them!", "Yes
# Man"); what is left is what a text search can use.
QUERY_STOP_WORDS = frozenset("""
a an the and or but so if then than to of in on at for from by with about as into over up out
i i'm im me my mine we us our you your he she him her it its it's they them their those these this
that there here what which who whom whose when where why how
am is are was were be been being do does did done have has had having will would could should can
may might must shall
yes yeah yep no nope not ok okay sure thanks thank hi hello hey please well oh lol haha wow
liked like likes love loved loves enjoyed enjoy great good nice awesome cool fine really very
too also just much more most some any anything something everything one ones all both each other
movie movies film films watch watched watching seen see saw recommend recommendation
recommendations suggest suggestions want wanted looking look think know heard
""".split())


# ---- helpers ------------------------------------------------------------------------------------

def _blank(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with the characters in ``spans`` replaced by spaces (positions stay where they were)."""
    chars = list(text)
    for s, e in spans:
        for i in range(s, min(e, len(chars))):
            chars[i] = " "
    return "".join(chars)


def _decade_bounds(m: re.Match) -> tuple[int, int] | None:
    """The (first, last) year of a ``DECADE_RE`` match, narrowed by early / mid / late."""
    qual, century, digit, short, word = m.groups()
    if century:
        start = int(century + digit + "0")
    elif short is not None:
        d = int(short)
        start = 2000 + 10 * d if d <= 2 else 1900 + 10 * d
    elif word:
        start = DECADE_WORDS[word.lower()]
    else:
        return None
    qual = (qual or "").lower().strip("- ")
    if qual == "early":
        return start, start + 4
    if qual == "late":
        return start + 5, start + 9
    if qual == "mid":
        return start + 3, start + 7
    return start, start + 9


def _negated(text: str, start: int, window: int = 4) -> bool:
    """Is the word starting at ``start`` negated by one of the ``window`` words before it (same clause)?"""
    before = text[:start]
    clause = re.split(r"[.;!?,\n]|\bbut\b|\band\b(?=\s+(?:some|a|an|more))", before)[-1]
    words = clause.split()[-window:]
    return bool(NEG_RE.search(" ".join(words)))
