"""The explicit dialog state: what the person liked, disliked, has seen or rejected, their
constraints, what was shown, and the messages so far.

The state is plain data: it prints (``describe``), saves (``to_dict`` -> JSON) and restores
(``from_dict``). The manager never mutates a state it was given; it copies it (``copy``) and
returns the new one.
"""
from __future__ import annotations

import copy as _copy
from dataclasses import asdict, dataclass, field, fields


@dataclass
class Constraints:
    """What the person asked for. Genres are catalogue genre names ("Sci-Fi")."""
    include_genres: list[str] = field(default_factory=list)
    exclude_genres: list[str] = field(default_factory=list)
    year_min: int | None = None
    year_max: int | None = None
    like_items: list[int] = field(default_factory=list)   # "something like X": catalogue ids
    but: str | None = None                                # the "but Y" of "like X but Y"
    moods: list[str] = field(default_factory=list)        # mood or theme words ("dark", "heist")
    audience: str | None = None                           # "kids", "family", "adults"
    people: list[str] = field(default_factory=list)       # directors / actors asked for (PeopleIndex names)

    def conflicts(self) -> list[str]:
        """Plain-words descriptions of constraints that cannot hold together."""
        out = [f"both {g} and no {g}" for g in self.include_genres if g in self.exclude_genres]
        if self.year_min is not None and self.year_max is not None and self.year_min > self.year_max:
            out.append(f"after {self.year_min} and before {self.year_max}")
        return out


@dataclass
class DialogState:
    liked: list[int] = field(default_factory=list)
    disliked: list[int] = field(default_factory=list)
    seen: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)
    shown: list[int] = field(default_factory=list)
    last_suggestions: list[int] = field(default_factory=list)
    constraints: Constraints = field(default_factory=Constraints)
    turn: int = 0
    user_id: int | None = None
    messages: list[dict] = field(default_factory=list)    # {"role": "user"|"assistant", "text": ...}
    asked_clarification: bool = False

    def copy(self) -> DialogState:
        return _copy.deepcopy(self)

    def excluded(self) -> set[int]:
        """Items never to suggest again (unless the person asks for them)."""
        return set(self.seen) | set(self.rejected) | set(self.shown) | set(self.disliked) | set(self.liked)

    def user_texts(self, last: int | None = None) -> list[str]:
        texts = [m["text"] for m in self.messages if m.get("role") == "user"]
        return texts if last is None else texts[-last:]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DialogState:
        """Restore a state saved by ``to_dict``; unknown keys are an error, missing ones default."""
        if not isinstance(d, dict):
            raise TypeError(f"a saved dialog state is a dict, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown dialog state keys: {sorted(unknown)}")
        kw = dict(d)
        c = kw.pop("constraints", None) or {}
        c_known = {f.name for f in fields(Constraints)}
        if set(c) - c_known:
            raise ValueError(f"unknown constraint keys: {sorted(set(c) - c_known)}")
        for key in ("liked", "disliked", "seen", "rejected", "shown", "last_suggestions"):
            kw[key] = [int(i) for i in kw.get(key, [])]
        cons = Constraints(**c)
        cons.like_items = [int(i) for i in cons.like_items]
        kw["messages"] = [dict(m) for m in kw.get("messages", [])]
        return cls(constraints=cons, **kw)

    def describe(self, catalog) -> str:
        """The state in plain words, one fact per line."""
        def names(ids, limit=8):
            shown = [catalog.display(i) for i in ids[-limit:]]
            more = len(ids) - len(shown)
            return ", ".join(shown) + (f" (+{more} more)" if more > 0 else "")

        c = self.constraints
        lines = [f"Turn {self.turn}" + (f", returning MovieLens user {self.user_id}" if self.user_id is not None
                                        else ", new user")]
        if self.liked:
            lines.append(f"Liked: {names(self.liked)}")
        if self.disliked:
            lines.append(f"Disliked: {names(self.disliked)}")
        if self.seen:
            lines.append(f"Seen: {names(self.seen)}")
        if self.rejected:
            lines.append(f"Not interested: {names(self.rejected)}")
        if c.include_genres:
            lines.append("Wants: " + ", ".join(c.include_genres))
        if c.exclude_genres:
            lines.append("Avoid: " + ", ".join(c.exclude_genres))
        if c.year_min is not None or c.year_max is not None:
            lo = c.year_min if c.year_min is not None else "any"
            hi = c.year_max if c.year_max is not None else "any"
            lines.append(f"Years: {lo} to {hi}")
        if c.like_items:
            lines.append(f"Something like: {names(c.like_items)}" + (f", but {c.but}" if c.but else ""))
        if c.moods:
            lines.append("Mood: " + ", ".join(c.moods))
        if c.audience:
            lines.append(f"Audience: {c.audience}")
        if c.people:
            lines.append("By or with: " + ", ".join(c.people))
        if self.last_suggestions:
            lines.append(f"Last suggested: {names(self.last_suggestions)}")
        if len(lines) == 1:
            lines.append("Nothing known yet.")
        return "\n".join(lines)
