"""People in a message: directors and actors the catalogue knows (``retrieval.people.PeopleIndex``),
and names after a people cue ("by", "starring", "with", "directed by") that it does not know.

``read_people(u, text, index)`` fills ``Understanding.people`` (canonical names) and
``unknown_people`` (names the reply must say it knows nothing about, rather than guess), and drops
title mentions that lie inside a person's name ("Steven" read as a title, "Nolan" as "Nolan (2004)").
"""
from __future__ import annotations

import re

from dialog.understand.understanding import Understanding

# "movies by Ava Lindqvist", "starring Ben Okafor", "with Tom Hanks in it", "directed by Jo Reyes"
_CUE = re.compile(r"\b(?:by|starring|stars|with|featuring|directed by|director|actor|actress|from)\s+"
                  r"((?:[A-Z][\w'’\-]+)(?:\s+(?:[A-Z][\w'’\-]+|de|van|von|da|del|di|la|le)){1,3})")
_NOT_NAME_WORDS = {"The", "A", "An", "I", "My", "Me", "It", "This", "That", "These", "Those", "Something",
                   "Anything", "Any", "Some", "Netflix", "Disney", "Pixar", "Marvel", "DC", "Hollywood",
                   "Christmas", "Halloween", "Friday", "Saturday", "Sunday", "Monday", "Tuesday", "Wednesday",
                   "Thursday", "English", "French", "Spanish", "German", "Italian", "Japanese", "Korean",
                   "Chinese", "Indian", "British", "American"}


_EDGE = " .,!?'\""          # punctuation around a title mention


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def read_people(u: Understanding, text: str, index, title_spans: list[tuple[int, int]] = ()) -> Understanding:
    """Fill ``u.people`` / ``u.unknown_people`` from ``text`` and drop title mentions inside a name.

    Args:
        u: the message's understanding (changed in place and returned).
        text: the message.
        index: ``retrieval.people.PeopleIndex`` or None (then only unknown names after a cue).
        title_spans: character spans of the title mentions the reader found (a cue followed by a
            title, "something with Heat", is not a person).
    """
    found = index.find(text) if index is not None else []
    spans = [(m.start, m.end) for m in found]
    for m in found:
        if m.person not in u.people:
            u.people.append(m.person)
    if found:
        names = [f" {' '.join(text[a:b].lower().split())} " for a, b in spans]
        u.titles = [t for t in u.titles
                    if not any(f" {' '.join(t.text.lower().strip(_EDGE).split())} " in n
                               for n in names)]        # whole words of a name: "Ma" is not inside "Uma"
    for c in _CUE.finditer(text):
        span = c.span(1)
        words = c.group(1).split()
        if words[0] in _NOT_NAME_WORDS or any(_overlaps(span, s) for s in spans + list(title_spans)):
            continue
        name = " ".join(words)
        if any(t.text.lower() in name.lower() for t in u.titles if t.item_id is not None):
            continue
        if name not in u.unknown_people:
            u.unknown_people.append(name)
    return u
