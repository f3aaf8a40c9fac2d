"""The output type of message understanding: ``Understanding`` (what one message asks the state to
change) with its ``TitleMention``s, the limits on messages and years, and ``truncate``."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

MAX_MESSAGE_CHARS = 2000
MIN_YEAR, MAX_YEAR = 1870, 2035


@dataclass
class TitleMention:
    text: str                    # as typed
    kind: str                    # liked | disliked | seen | explain | mention
    item_id: int | None = None   # resolved catalogue item, None if not in the catalogue
    candidates: list[int] = field(default_factory=list)   # when the title is ambiguous
    score: float = 0.0


@dataclass
class Understanding:
    """What one message asks the state to change. Positions refer to the last suggestions (0-based)."""
    titles: list[TitleMention] = field(default_factory=list)
    include_genres: list[str] = field(default_factory=list)
    exclude_genres: list[str] = field(default_factory=list)
    year_min: int | None = None
    year_max: int | None = None
    moods: list[str] = field(default_factory=list)
    audience: str | None = None
    but: str | None = None
    like_refs: list[int] = field(default_factory=list)
    dislike_refs: list[int] = field(default_factory=list)
    seen_refs: list[int] = field(default_factory=list)
    explain_refs: list[int] = field(default_factory=list)
    wants_explanation: bool = False
    reject_all: bool = False
    reset: bool = False
    injection: bool = False
    nonexistent: bool = False
    people: list[str] = field(default_factory=list)          # directors / actors the catalogue knows
    unknown_people: list[str] = field(default_factory=list)  # names after "by", "starring"... it does not
    query_text: str = ""         # the message's content words for text retrieval (negations removed)
    source: str = "rules"        # rules | llm | llm-repaired

    @property
    def unknown_titles(self) -> list[str]:
        return [m.text for m in self.titles if m.item_id is None and not m.candidates]

    def has_content(self) -> bool:
        """True when the message gave anything to rank by."""
        return bool(self.include_genres or self.year_min is not None or self.year_max is not None
                    or self.moods or self.audience or self.like_refs or self.dislike_refs
                    or self.exclude_genres or self.people
                    or any(m.item_id is not None for m in self.titles)
                    or bool(re.search(r"[a-z]{3,}", self.query_text.lower())))   # stop words already out

    def to_dict(self) -> dict:
        return asdict(self)


def truncate(text: str, limit: int = MAX_MESSAGE_CHARS) -> tuple[str, str | None]:
    """(text cut to ``limit`` characters, a notice when it was cut)."""
    text = "" if text is None else str(text)
    text = text.replace("\x00", "")
    if len(text) <= limit:
        return text, None
    return text[:limit], f"Your message was cut to {limit:,} characters (it had {len(text):,})."
