"""The user simulator: plays a real MovieLens user whose hidden target is their held-out last
positively rated movie (``last_positive_holdout``), for scripted evaluations.

What the simulator knows: the target's genres, year, tags, description and popularity, and the
user's earlier history (train part). It never says the target's title: every message is checked
by ``leaks_title`` (a fuzzy match of the normalised title) and regenerated without the offending
hint; leaks are counted.

How a conversation goes (template tier, deterministic given the seed):
  * opening: the target's genres (up to 3), its decade, and a movie from the history the user
    rated >= 4 that most resembles the target (text embedding similarity);
  * each later turn: accept when the target is in the list ("yes, the second one!"); otherwise
    reject with reasons consistent with the target ("no horror", "too old, from the 90s please")
    and add one new hint: tags, then description keywords (lower-case content words of moderate
    rarity, never names and never a word of the title), then a narrower period, then how well
    known the movie is;
  * a clarifying question is answered with the next hint.
The terse variant of the template tier (``TerseSimulator``) says much less, so rankers can be told
apart where the template tier's hints make the task easy: it opens with one genre only (the most
telling of the target's; the full genre set alone puts the target in SASRec's top 25 within those
genres for 73% of test users), and later turns give only the reasons for rejecting what was shown
(and genres and decade when asked), no new hints; what is left to find the movie is the person's
history and the reasons.
The LLM tier (``LLMSimulator``) paraphrases the template message with the local LLM, seeded, with
responses cached by prompt hash so reruns replay exactly; a paraphrase that leaks or drops the
content falls back to the template message.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rapidfuzz import fuzz

from retrieval.titles import normalize_title

ORDINAL_WORDS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
STOPWORDS = set("""a about above after again against all also am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further had has have having he
her here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not now of
off on once only or other our ours out over own same she should so some such than that the their theirs them then
there these they this those through to too under until up very was we were what when where which while who whom why
will with would you your yours film films movie movies story stories life lives man men woman women young old new
find finds found world year years time times becomes become must tries try help helps gets get take takes make makes
one two three first last day days home family friend friends when while after begin begins meanwhile between soon
named called along however another own way ways back away lead leads well also take taking going goes things thing
place places even still much many several part around based within without during becomes turns turn set sets
their they them these those whose whom himself herself themselves each every other others later early finally
""".split())


@dataclass
class Persona:
    """One simulated person: a MovieLens user and their hidden target."""
    user_id: int                  # MovieLens user id
    user_index: int               # dense index in the split
    target: int                   # catalogue item id (never shown to the recommender)
    history: list[int]            # train part, time order
    history_ratings: list[float]


@dataclass
class SimMessage:
    text: str
    leaks: int = 0                # drafts rejected because they named the target
    accepted: bool = False        # the person found the target in the list


def personas(split, users: list[int] | np.ndarray) -> list[Persona]:
    """Personas for dense user indices that have a target."""
    out = []
    for u in users:
        u = int(u)
        if split.test[u] < 0:
            continue
        out.append(Persona(int(split.user_ids[u]), u, int(split.test[u]), [int(i) for i in split.train[u]],
                           [float(r) for r in split.train_ratings[u]]))
    return out


def sample_users(split, n: int, seed: int, exclude: set[int] = frozenset()) -> list[int]:
    """``n`` dense user indices with a target, drawn with ``seed`` (sorted for stable order)."""
    pool = np.array([u for u in np.flatnonzero(split.test >= 0) if int(u) not in exclude])
    rng = np.random.default_rng(seed)
    take = rng.choice(pool, size=min(n, len(pool)), replace=False)
    return sorted(int(u) for u in take)


def leaks_title(text: str, title: str, alt_titles: list[str] = (), threshold: float = 90) -> bool:
    """Does ``text`` name the movie? Normalised exact word match for short titles, fuzzy
    partial match (>= threshold) for longer ones, over the title and its alternative titles."""
    norm_text = " " + normalize_title(text) + " "
    for t in [title, *alt_titles]:
        key = normalize_title(t)
        if not key:
            continue
        if len(key) <= 5 or len(key.split()) == 1:
            if re.search(r"\b%s\b" % re.escape(key), norm_text):
                return True
        elif fuzz.partial_ratio(key, norm_text) >= threshold:
            return True
    return False


class TargetFacts:
    """What the simulator can say about items: genres, decade, tags, description keywords, fame."""

    def __init__(self, catalog, text_embeds: np.ndarray, popularity: np.ndarray):
        self.catalog = catalog
        self.items = catalog.items
        self.text_embeds = text_embeds
        pop = np.asarray(popularity, dtype=np.float64)
        nz = pop[pop > 0]
        self.pop = pop
        self.pop_hi = float(np.quantile(nz, 0.9)) if len(nz) else 1.0
        self.pop_lo = float(np.quantile(nz, 0.5)) if len(nz) else 0.0
        docs = [set(self._words(d)) for d in self.items["description"]]
        self.df = Counter(w for d in docs for w in d)
        self.n_docs = max(1, sum(1 for d in docs if d))
        self.genre_freq = Counter(g for gs in self.items["genres"] for g in gs)

    @staticmethod
    def _words(text: str) -> list[str]:
        # lower-case words only: capitalised words are names (characters, places), which a person
        # might know but which identify a movie too directly
        return [w for w in re.findall(r"(?<![\w'-])([a-z][a-z-]{3,})(?![\w'-])", text or "")
                if w not in STOPWORDS]

    def genres(self, item: int, n: int = 3) -> list[str]:
        gs = [g for g in self.items.genres.iloc[item] if g not in ("IMAX", "(no genres listed)")]
        return sorted(gs, key=lambda g: self.genre_freq[g])[:n]     # the most telling first

    def year(self, item: int) -> int | None:
        y = self.items.year.iloc[item]
        return None if y != y else int(y)

    def keywords(self, item: int, n: int = 6) -> list[str]:
        """Rare-ish lower-case content words of the description, never a word of the title."""
        row = self.items.iloc[item]
        title_words = {w[:5] for t in [row.title, *row.alt_titles] for w in normalize_title(t).split()}
        words = [w for w in dict.fromkeys(self._words(row.description)) if w[:5] not in title_words]
        scored = [(math.log(self.n_docs / self.df[w]), w) for w in words if 2 <= self.df[w] <= 300]
        return [w for _, w in sorted(scored, key=lambda x: (-x[0], x[1]))[:n]]

    def tags(self, item: int, n: int = 3) -> list[str]:
        return [t for t in self.items.tags.iloc[item] if len(t) > 2][:n]

    def fame(self, item: int) -> str:
        p = self.pop[item]
        if p >= self.pop_hi:
            return "It's a pretty famous one, I think."
        if p <= self.pop_lo:
            return "It's not very well known."
        return "It's reasonably well known."


def decade_phrase(year: int) -> str:
    d = year // 10 * 10
    return f"the {str(d)[2:]}s" if 1920 <= d < 2000 else f"the {d}s"


def period_phrase(year: int) -> str:
    d = year // 10 * 10
    part = "early" if year - d <= 3 else "late" if year - d >= 7 else "mid"
    return f"the {part} {str(d)[2:]}s" if d < 2000 else f"the {part} {d}s"


class TemplateSimulator:
    """The deterministic tier. ``opening``, then ``react`` to each system turn.

    Args:
        facts: ``TargetFacts`` over the catalogue.
        seed: varies phrasing choices only, deterministically per user.
    """

    name = "template"

    def __init__(self, facts: TargetFacts, seed: int = 0):
        self.facts = facts
        self.seed = seed
        self.catalog = facts.catalog

    # ---- hints ----
    def _rng(self, p: Persona, turn: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, p.user_id, turn])

    def _liked_like_target(self, p: Persona, skip: set[int]) -> int | None:
        liked = [i for i, r in zip(p.history, p.history_ratings) if r >= 4 and i not in skip]
        if not liked:
            return None
        sims = self.facts.text_embeds[liked] @ self.facts.text_embeds[p.target]
        return liked[int(np.argmax(sims))]

    def hints(self, p: Persona) -> list[str]:
        """Hints after the opening, in the order they are given."""
        f, t = self.facts, p.target
        out = []
        tags = f.tags(t)
        if tags:
            out.append(f"I'd like something {', '.join(tags)}.")
        kw = f.keywords(t)
        if kw[:3]:
            out.append(f"It should be about {', '.join(kw[:3])}.")
        y = f.year(t)
        if y:
            out.append(f"Ideally from {period_phrase(y)}.")
        if kw[3:6]:
            out.append(f"Maybe with {', '.join(kw[3:6])}.")
        out.append(f.fame(t))
        return out

    def _check(self, text: str, p: Persona) -> bool:
        row = self.catalog.items.iloc[p.target]
        return leaks_title(text, row.title, list(row.alt_titles))

    def opening(self, p: Persona) -> SimMessage:
        f, t = self.facts, p.target
        genres = f.genres(t)
        y = f.year(t)
        rng = self._rng(p, 0)
        ask = ["I'm looking for", "Can you recommend", "I'd like", "I want to watch"][int(rng.integers(4))]
        what = " ".join(g.lower() for g in genres) or "good"
        article = "an" if what[0] in "aeiou" else "a"
        text = f"{ask} {article} {what} movie" + (f" from {decade_phrase(y)}" if y else "") + "."
        leaks, skip = 0, set()
        for _ in range(5):
            liked = self._liked_like_target(p, skip)
            if liked is None:
                break
            cand = text + f" I loved {self.catalog.items.title.iloc[liked]}."
            if self._check(cand, p):
                leaks += 1
                skip.add(liked)
                continue
            text = cand
            break
        if self._check(text, p):        # the genres/decade never name a title, but check anyway
            leaks += 1
            text = "I'm looking for a good movie."
        return SimMessage(text, leaks)

    def react(self, p: Persona, turn: int, shown: list[int], asked: bool) -> SimMessage:
        """The person's next message after the system's turn ``turn`` (1-based) showed ``shown``."""
        f, t = self.facts, p.target
        if t in shown:
            pos = shown.index(t)
            word = ORDINAL_WORDS[pos] if pos < len(ORDINAL_WORDS) else "that"
            return SimMessage(f"Yes, the {word} one is exactly what I was looking for!", accepted=True)
        parts = []
        if shown and not asked:
            tg = set(f.items.genres.iloc[t])
            wrong = Counter(g for i in shown for g in f.items.genres.iloc[i]
                            if g not in tg and g not in ("IMAX", "(no genres listed)"))
            ty = f.year(t)
            years = [f.year(i) for i in shown if f.year(i)]
            if wrong:
                g = wrong.most_common(1)[0][0]
                parts.append(f"Not those, I'm not into {g.lower()}.")
            if ty and years:
                d = ty // 10 * 10
                if sum(y < d for y in years) > len(years) / 2:
                    parts.append(f"Those are too old; something from {decade_phrase(ty)}.")
                elif sum(y > d + 9 for y in years) > len(years) / 2:
                    parts.append(f"Those are too recent; something from {decade_phrase(ty)}.")
            if not parts:
                parts.append("None of these, something else.")
        hints = self.hints(p)
        idx = min(turn - 1, len(hints) - 1)
        if asked:   # answer the question with what is known: genres, decade and the next hint
            g = " ".join(x.lower() for x in f.genres(t))
            y = f.year(t)
            parts.append(f"Something {g}" + (f" from {decade_phrase(y)}" if y else "") + ".")
        text, leaks = " ".join(parts), 0
        for h in hints[idx:] + [""]:
            cand = (text + " " + h).strip()
            if self._check(cand, p):
                leaks += 1
                continue
            text = cand
            break
        return SimMessage(text or "Something else, please.", leaks)


class TerseSimulator(TemplateSimulator):
    """The template tier with no volunteered hints: one genre to open, then only rejection reasons."""

    name = "terse"

    def hints(self, p: Persona) -> list[str]:
        return []

    def opening(self, p: Persona) -> SimMessage:
        genres = self.facts.genres(p.target, n=1)
        rng = self._rng(p, 0)
        ask = ["I'm looking for", "Can you recommend", "I'd like", "I want to watch"][int(rng.integers(4))]
        what = genres[0].lower() if genres else "good"
        article = "an" if what[0] in "aeiou" else "a"
        return SimMessage(f"{ask} {article} {what} movie.")


class LLMSimulator(TemplateSimulator):
    """The LLM tier: the template message, paraphrased by the local LLM (seeded, cached by prompt
    hash in ``cache_path``); a paraphrase that names the target or drops the genre words is
    regenerated once with another seed, then the template message is used."""

    name = "llm"
    PROMPT = ("Rewrite this message from a person chatting with a movie recommender so it sounds natural "
              "and casual. Keep every fact, add none, and do not name any movie that is not in it. "
              "Reply with the rewritten message only.\nMessage: {text}")

    def __init__(self, facts: TargetFacts, chat, cache_path: str | Path | None = None, seed: int = 0,
                 max_new_tokens: int = 60):
        super().__init__(facts, seed)
        self.chat = chat
        self.cache_path = Path(cache_path) if cache_path else None
        self.cache: dict[str, str] = {}
        if self.cache_path and self.cache_path.is_file():
            self.cache = json.loads(self.cache_path.read_text())
        self.max_new_tokens = max_new_tokens
        self.calls = 0

    def _generate(self, prompt: str, seed: int) -> str:
        from langchain_core.messages import HumanMessage
        key = hashlib.sha256(f"{seed}\x00{prompt}".encode()).hexdigest()
        if key not in self.cache:
            out = self.chat.invoke([HumanMessage(prompt)], max_new_tokens=self.max_new_tokens, seed=seed,
                                   do_sample=True)
            self.cache[key] = getattr(out, "content", str(out)).strip().strip('"')
            self.calls += 1
        return self.cache[key]

    def save_cache(self) -> None:
        if self.cache_path:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            self.cache_path.write_text(json.dumps(self.cache, indent=0, sort_keys=True))

    def _paraphrase(self, msg: SimMessage, p: Persona) -> SimMessage:
        if msg.accepted:
            return msg
        leaks = msg.leaks
        for attempt in range(2):
            text = self._generate(self.PROMPT.format(text=msg.text), self.seed * 1000 + attempt)
            if self._check(text, p):
                leaks += 1
                continue
            if text and len(text) < 600 and all(g.lower() in text.lower() for g in
                                                re.findall(r"\b(?:not into|a) ([a-z-]+)", msg.text)[:1]):
                return SimMessage(text, leaks)
        return SimMessage(msg.text, leaks)

    def opening(self, p: Persona) -> SimMessage:
        return self._paraphrase(super().opening(p), p)

    def react(self, p: Persona, turn: int, shown: list[int], asked: bool) -> SimMessage:
        return self._paraphrase(super().react(p, turn, shown, asked), p)


@dataclass
class Conversation:
    """One simulated conversation, as recorded (replayable: the messages are the script)."""
    user_id: int
    target: int
    messages: list[dict] = field(default_factory=list)   # {"role", "text", "items"?}
    success_turn: int | None = None
    final_list: list[int] = field(default_factory=list)
    leaks: int = 0
    latencies_s: list[float] = field(default_factory=list)
    turns: int = 0


def run_conversation(system, sim: TemplateSimulator, p: Persona, max_turns: int = 5, list_k: int = 5
                     ) -> Conversation:
    """Play one conversation between ``system`` (``dialog.eval.systems``) and the simulator."""
    conv = Conversation(p.user_id, p.target)
    state = system.start(p.user_id)
    msg = sim.opening(p)
    for turn in range(1, max_turns + 1):
        conv.leaks += msg.leaks
        conv.messages.append({"role": "user", "text": msg.text})
        out = system.turn(state, msg.text)
        state = out.state
        conv.latencies_s.append(out.latency_s)
        conv.turns = turn
        conv.messages.append({"role": "assistant", "text": out.reply, "items": out.ranked[:list_k],
                              "action": out.action})
        if out.ranked:
            conv.final_list = list(out.ranked)
        if p.target in out.ranked[:list_k]:
            conv.success_turn = turn
            break
        if turn < max_turns:
            msg = sim.react(p, turn, out.ranked[:list_k], out.action == "ask")
    return conv
