"""Message understanding: one user message -> an ``Understanding`` (the state updates it asks for).

Two paths share one output type:
  * ``parse_message`` (``rules``): deterministic rules over the vocabulary in ``lexicon``. Title
    mentions (after "loved", "like", "seen", quotes, capitalised runs) are resolved through the
    catalogue's ``TitleIndex`` (``finder``); genre, decade and year words; negations ("no horror",
    "nothing older than 1990"); references to the last suggestions ("more like the second one",
    "seen it", "none of these"); explanation requests; prompt injection; start over.
  * ``LLMUnderstander`` (``extraction``): the chat model extracts the same fields as JSON;
    ``validate_understanding`` checks the JSON against ``UNDERSTANDING_SCHEMA`` once, there; one
    repair attempt with the validation error; then the deterministic parse. Titles the LLM names
    are resolved through the same title finder, so nothing outside the catalogue becomes an item.

The output type, the message limit and ``truncate`` live in ``understanding``.
"""
from dialog.understand.extraction import (
    EXTRACTION_PROMPT,
    UNDERSTANDING_SCHEMA,
    LLMUnderstander,
    SchemaError,
    extract_json,
    validate_understanding,
)
from dialog.understand.finder import TitleFinder
from dialog.understand.lexicon import GENRE_PATTERNS, MOOD_WORDS, canonical_genre, genre_of_word
from dialog.understand.rules import parse_message
from dialog.understand.understanding import MAX_MESSAGE_CHARS, MAX_YEAR, MIN_YEAR, TitleMention, Understanding, truncate

__all__ = [
    "EXTRACTION_PROMPT", "GENRE_PATTERNS", "LLMUnderstander", "MAX_MESSAGE_CHARS", "MAX_YEAR", "MIN_YEAR",
    "MOOD_WORDS", "SchemaError", "TitleFinder", "TitleMention", "UNDERSTANDING_SCHEMA", "Understanding",
    "canonical_genre", "extract_json", "genre_of_word", "parse_message", "truncate", "validate_understanding",
]
