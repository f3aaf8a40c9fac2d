"""The LLM as a scorer (the survey's "LLM as ranker"): candidate movies ordered by how likely the
LLM finds their title as the recommender's next words in the conversation.

The prompt is one shared prefix (instructions, for ``few_shot`` two worked examples written for
this module, then the latest turns of the conversation, then ``Recommender: You should watch``);
each candidate's continuation is `` "<Title> (<year>)".`` Its score is the mean log-probability of
the continuation's tokens (``LLMScorerConfig.length_norm="mean"``; ``"sum"`` favours short titles).
The prefix is read once per conversation, and its first part (the instructions and examples) is
the same for every conversation, so the runtime's prompt reuse keeps it
(``ilm.runtime.LLMRuntime.logprobs``).

The examples are invented conversations about movies (no data set text), so nothing of the
benchmarks leaks into the prompt.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MODES = ("zero_shot", "few_shot")

INSTRUCTIONS = ("Below is a conversation between a movie fan and a recommender who knows films well. "
                "The recommender answers with one movie that fits what the fan asked for and liked.\n\n")

EXAMPLES = ("Fan: I loved Alien and The Thing. Something that scares me like those?\n"
            "Recommender: You should watch \"Event Horizon (1997)\".\n\n"
            "Fan: My kids adored Finding Nemo. Any other animated film for a family night?\n"
            "Recommender: You should watch \"Monsters, Inc. (2001)\".\n\n")

CUE = "Recommender: You should watch"


@dataclass
class LLMScorerConfig:
    mode: str = "zero_shot"          # zero_shot | few_shot (the two worked examples above)
    context_chars: int = 700         # the latest turns that fit, oldest cut first
    length_norm: str = "mean"        # mean | sum of the continuation's token log-probabilities

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {self.mode!r}")
        if self.length_norm not in ("mean", "sum"):
            raise ValueError(f"length_norm must be 'mean' or 'sum', not {self.length_norm!r}")
        if self.context_chars < 1:
            raise ValueError("context_chars must be at least 1")


def conversation_text(turns: Sequence[dict], max_chars: int) -> str:
    """The latest ``{role, text}`` turns as "Fan: ..." / "Recommender: ..." lines, at most
    ``max_chars`` characters (whole turns; the oldest are cut first, the last one is clipped from
    its start if it alone is too long)."""
    lines = [f"{'Fan' if t['role'] == 'user' else 'Recommender'}: {' '.join(str(t['text']).split())}"
             for t in turns if str(t.get("text", "")).strip()]
    kept, size = [], 0
    for line in reversed(lines):
        if size + len(line) + 1 > max_chars:
            if not kept:
                kept.append(line[-max_chars:])
            break
        kept.append(line)
        size += len(line) + 1
    return "\n".join(reversed(kept))


class LLMScorer:
    """``score(turns, item_ids) -> (C,)`` log-probability scores over the catalogue's titles.

    Args:
        runtime: an ``ilm.runtime.LLMRuntime`` that scores continuations (llamacpp, transformers).
        catalog: ``retrieval.catalog.Catalog`` (titles and years by item id).
    """

    def __init__(self, runtime, catalog, cfg: LLMScorerConfig | None = None):
        self.runtime = runtime
        self.catalog = catalog
        self.cfg = cfg or LLMScorerConfig()

    def prefix(self, turns: Sequence[dict]) -> str:
        head = INSTRUCTIONS + (EXAMPLES if self.cfg.mode == "few_shot" else "")
        return head + conversation_text(turns, self.cfg.context_chars) + "\n" + CUE

    def continuation(self, item_id: int) -> str:
        row = self.catalog.items.iloc[int(item_id)]
        year = "" if row.year != row.year else f" ({int(row.year)})"
        return f' "{row.title}{year}".'

    def score(self, turns: Sequence[dict], item_ids: Sequence[int]) -> np.ndarray:
        if not len(item_ids):
            return np.zeros(0)
        conts = [self.continuation(i) for i in item_ids]
        lp = np.asarray(self.runtime.logprobs(self.prefix(turns), conts), dtype=np.float64)
        if self.cfg.length_norm == "mean":
            lp = lp / np.maximum([len(self.runtime.tokenize(c)) for c in conts], 1)
        return lp
