"""Stage-2 examples, built from the training split only, and their collation into LLM batches.

Tasks (ILM arXiv 2406.02844 section 4; UEM arXiv 2401.04858 for genre preference):
  next_item     a user (``{user}``) and their last movies (``<item>`` each), sometimes what they
                asked for ("They said: ..."), -> the next movie; no target text: the next-item
                head scores the LLM's last prompt state against items
  description   ``<item>`` -> "Title (year). Genres: ... . description"
  facts         ``<item>`` -> "Genres: ... . Decade: 1990s." (what the item-token probes ask)
  genre_pref    a user -> the genres of the movies they go on to rate highly (the UEM task)
  conversation  "I enjoyed <item>. What should I watch next?" -> a templated suggestion of the
                movie that user watched next

A prompt names its user with the ``{user}`` field, filled per user encoder: ``<user>`` for
Q-Former user tokens or UEM soft prompts, a comma-separated list of titles for history-as-text.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ilm.config import ITEM_TOKEN, USER_TOKEN
from ilm.splice import build_prompt, make_labels

TASKS = ("next_item", "description", "genre_pref", "conversation", "facts")
USER_ENCODERS = ("qformer", "uem", "text")
SYSTEM = "You are a movie recommender."
MIN_POSITIVE = 4.0

NEXT_ITEM_PROMPT = ("A viewer: {user}. The last movies they watched: {recent}. "
                    "Which movie will they watch next?")
DESCRIPTION_PROMPT = "Describe the movie " + ITEM_TOKEN + "."
GENRE_PROMPT = "A viewer: {user}. Which movie genres do they like most?"
CONVERSATION_PROMPT = "I enjoyed " + ITEM_TOKEN + ". What should I watch next?"
FACTS_PROMPT = "What are the genres and the decade of the movie " + ITEM_TOKEN + "?"
NO_GENRE = "(no genres listed)"


@dataclass
class Example:
    task: str
    prompt: str                        # the user message, with {user} and <item> markers
    target: str | None                 # the assistant's text; None for next_item
    items: list[int] = field(default_factory=list)  # one item id per <item>, reading order
    history: np.ndarray | None = None  # item ids of the user behind {user}
    next_item: int = -1                # next_item: the item to score
    genres: list[str] = field(default_factory=list)  # genre_pref: the target genres


def describe(item: dict, max_words: int = 40) -> str:
    """The reference text of the description task."""
    head = f"{item['title']} ({item['year']})" if item.get("year") else item["title"]
    genres = ", ".join(item["genres"]) if len(item["genres"]) else "unknown"
    words = str(item.get("description") or "").split()
    desc = " ".join(words[:max_words]) + ("..." if len(words) > max_words else "")
    return f"{head}. Genres: {genres}." + (f" {desc}" if desc else "")


def decade_of(year) -> str | None:
    """"1990s" for 1995; None for a missing year (None or NaN)."""
    return f"{int(year) // 10 * 10}s" if year and year == year else None


def facts(item: dict) -> str:
    """The reference answer of the facts task: the item's genres and decade."""
    genres = ", ".join(g for g in item["genres"] if g != NO_GENRE) or "unknown"
    return f"Genres: {genres}. Decade: {decade_of(item.get('year')) or 'unknown'}."


def display(item: dict) -> str:
    return f"{item['title']} ({item['year']})" if item.get("year") else item["title"]


def genre_targets(items: Sequence[int], ratings: Sequence[float], item_genres: Sequence[Sequence[str]],
                  top: int = 3) -> list[str]:
    """The most frequent genres of the positively rated (>= 4) items, at most ``top``."""
    counts = Counter(g for i, r in zip(items, ratings) if r >= MIN_POSITIVE for g in item_genres[i])
    return [g for g, _ in counts.most_common(top)]


class TaskBuilder:
    """Draws stage-2 examples from the training split.

    Args:
        train, train_ratings: ``Split.train`` and ``Split.train_ratings``.
        items: catalogue rows as dicts (title, year, genres, description), indexed by item id.
        n_recent: how many last movies the next_item prompt shows as ``<item>`` mentions.
        lookahead: genre_pref targets come from this many items after the cut.
        exclude_items: items never used as description / conversation subjects (held out).
        request_prob: how often a next_item prompt also says what the viewer asked for, a request
            built from the next movie's genres and decade (``request_text``), as a person in a
            conversation would; the ILM then learns to read a request beside the history.
    """

    def __init__(self, train, train_ratings, items: Sequence[dict], n_recent: int = 3,
                 lookahead: int = 10, min_history: int = 3, exclude_items=(), seed: int = 0,
                 request_prob: float = 0.0):
        if not 0.0 <= request_prob <= 1.0:
            raise ValueError(f"request_prob must be in [0, 1], got {request_prob}")
        self.request_prob = request_prob
        self.train = [np.asarray(s, dtype=np.int64) for s in train]
        self.ratings = [np.asarray(r, dtype=np.float32) for r in train_ratings]
        self.items = items
        self.genres = [list(it["genres"]) for it in items]
        self.n_recent, self.lookahead, self.min_history = n_recent, lookahead, min_history
        self.rng = np.random.default_rng(seed)
        self.users = np.array([u for u, s in enumerate(self.train) if len(s) > min_history])
        if not len(self.users):
            raise ValueError(f"no user has more than {min_history} training items")
        excluded = set(int(i) for i in exclude_items)
        seen = np.unique(np.concatenate(self.train))
        self.describable = np.array([i for i in seen if i not in excluded], dtype=np.int64)

    def _cut(self, user: int) -> int:
        return int(self.rng.integers(self.min_history, len(self.train[user])))

    def next_item(self) -> Example:
        u = int(self.rng.choice(self.users))
        t = self._cut(u)
        target = int(self.train[u][t])
        said = request_text(self.items[target]) if self.rng.random() < self.request_prob else ""
        return next_item_example(self.train[u][:t], self.n_recent, target=target, said=said)

    def description(self) -> Example:
        i = int(self.rng.choice(self.describable))
        return Example("description", DESCRIPTION_PROMPT, describe(self.items[i]), items=[i])

    def facts(self) -> Example:
        i = int(self.rng.choice(self.describable))
        return Example("facts", FACTS_PROMPT, facts(self.items[i]), items=[i])

    def genre_pref(self) -> Example:
        for _ in range(20):
            u = int(self.rng.choice(self.users))
            t = self._cut(u)
            end = t + self.lookahead
            genres = genre_targets(self.train[u][t:end], self.ratings[u][t:end], self.genres)
            if genres:
                return genre_example(self.train[u][:t], genres)
        return self.next_item()  # a user with no positive rating ahead: rare

    def conversation(self) -> Example:
        u = int(self.rng.choice(self.users))
        t = self._cut(u)
        liked, nxt = int(self.train[u][t - 1]), int(self.train[u][t])
        it = self.items[nxt]
        genres = " / ".join(it["genres"][:2]).lower() if len(it["genres"]) else "great"
        return Example("conversation", CONVERSATION_PROMPT,
                       f"You could try {display(it)}, a {genres} movie.", items=[liked])

    def sample(self, task: str) -> Example:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; known: {TASKS}")
        return getattr(self, task)()


def request_text(item: dict) -> str:
    """What a person might ask for when this movie is what they want: its genres and decade."""
    genres = " ".join(g.lower() for g in list(item["genres"])[:2] if g != NO_GENRE)
    decade = decade_of(item.get("year"))
    decade = f" from the {decade}" if decade else ""
    return f"I'd like a {genres or 'good'} movie{decade}."


def next_item_example(history: np.ndarray, n_recent: int, target: int = -1, said: str = "",
                      max_said_chars: int = 400) -> Example:
    """The next-item prompt; ``said`` (the person's words, last ``max_said_chars`` kept) is appended."""
    recent = [int(i) for i in history[-n_recent:]] if n_recent else []
    prompt = NEXT_ITEM_PROMPT.replace("{recent}", ", ".join([ITEM_TOKEN] * len(recent)) or "none")
    said = " ".join(str(said).split())[-max_said_chars:]
    if said:
        prompt += f" They said: {said}"
    return Example("next_item", prompt, None, items=recent, history=np.asarray(history), next_item=target)


def genre_example(history: np.ndarray, genres: Sequence[str] = ()) -> Example:
    return Example("genre_pref", GENRE_PROMPT, ", ".join(genres), history=np.asarray(history),
                   genres=list(genres))


def chat_text(tokenizer, message: str) -> str:
    """The prompt as the LLM's chat format expects it, ending where the assistant starts."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "system", "content": SYSTEM}, {"role": "user", "content": message}],
            add_generation_prompt=True, tokenize=False)
    return f"{SYSTEM}\nUser: {message}\nAssistant:"


@dataclass
class LLMBatch:
    input_ids: torch.Tensor            # (B, T), right-padded
    attention_mask: torch.Tensor       # (B, T)
    labels: torch.Tensor               # (B, T), -100 on prompt, placeholders and padding
    last_prompt: torch.Tensor          # (B,) index of each row's last prompt token
    item_ids: list[int]                # one per <item> mention, reading order
    histories: list[np.ndarray]        # one per <user> mention, reading order
    next_items: torch.Tensor           # (B,) next_item targets, -1 elsewhere
    tasks: list[str]


def collate(examples: Sequence[Example], tokenizer, n_query: int, user_encoder: str = "qformer",
            titles: Sequence[str] | None = None, text_history: int = 50, max_target_tokens: int = 64
            ) -> LLMBatch:
    """Chat-format, expand the placeholders (``n_query`` copies each), tokenize and label.

    Args:
        user_encoder: how ``{user}`` is written: "qformer" / "uem" (a ``<user>`` placeholder) or
            "text" (the last ``text_history`` titles of the history; needs ``titles``).
    """
    if user_encoder not in USER_ENCODERS:
        raise ValueError(f"user_encoder must be one of {USER_ENCODERS}, got {user_encoder!r}")
    rows, prompt_lens, item_ids, histories = [], [], [], []
    for ex in examples:
        message = ex.prompt
        if "{user}" in message:
            if user_encoder == "text":
                if titles is None:
                    raise ValueError("user_encoder='text' needs the titles")
                hist = [titles[i] for i in ex.history[-text_history:]]
                message = message.replace("{user}", "someone who watched " + "; ".join(hist))
            else:
                message = message.replace("{user}", USER_TOKEN)
                histories.append(ex.history)
        item_ids += ex.items
        prompt = build_prompt(chat_text(tokenizer, message), n_query)
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        t_ids = []
        if ex.target:
            t_ids = tokenizer(ex.target, add_special_tokens=False)["input_ids"][:max_target_tokens]
            t_ids = t_ids + [tokenizer.eos_token_id]
        rows.append(p_ids + t_ids)
        prompt_lens.append(len(p_ids))
    T = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    input_ids = torch.full((len(rows), T), pad, dtype=torch.long)
    attention_mask = torch.zeros(len(rows), T, dtype=torch.long)
    for b, r in enumerate(rows):
        input_ids[b, :len(r)] = torch.tensor(r)
        attention_mask[b, :len(r)] = 1
    placeholder_ids = tokenizer.convert_tokens_to_ids([ITEM_TOKEN, USER_TOKEN])
    labels = make_labels(input_ids, prompt_lens=prompt_lens, attention_mask=attention_mask,
                         placeholder_ids=placeholder_ids)
    return LLMBatch(input_ids, attention_mask, labels, torch.tensor(prompt_lens) - 1, item_ids,
                    histories, torch.tensor([ex.next_item for ex in examples]),
                    [ex.task for ex in examples])
