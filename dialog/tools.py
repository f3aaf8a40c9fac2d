"""The dialog tools: retrieve, filter, rank, explain. Each has a name, a one-line description, a
typed argument dataclass and a typed result with a short text ``observation`` for an LLM.

Tools take their arguments and return a result; they hold no conversation state (that lives in
``DialogState``, owned by the manager, which hands it to ``rank`` per call for the ILM scorer).
``Toolbox`` binds them to the loaded ``Resources``; ``langchain_tools`` exposes the same four as
LangChain ``StructuredTool``s.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from dialog.ranker import FEATURES, Ranker
from dialog.state import DialogState

IlmScorer = Callable[[DialogState | None, np.ndarray], np.ndarray]   # (state, candidate ids (C,)) -> (C,) scores
RankRecorder = Callable[[np.ndarray, np.ndarray], None]  # (candidate ids (C,), features (C, F)) per rank call


def _norm(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


# ---- arguments and results ------------------------------------------------------------------

@dataclass
class RetrieveArgs:
    query_text: str = ""
    history: list[int] = field(default_factory=list)      # CF session: the user's items, oldest first
    like_items: list[int] = field(default_factory=list)   # item-to-item seeds
    exclude_ids: list[int] = field(default_factory=list)
    include_genres: list[str] = field(default_factory=list)
    exclude_genres: list[str] = field(default_factory=list)
    year_min: int | None = None
    year_max: int | None = None
    k_text: int = 150
    k_cf: int = 100
    k_item: int = 20
    k_popular: int = 30
    k_after: int = 30            # per anchor: the movies people recommended after it
    k_talked: int = 100          # the movies recommended most in real conversations
    mentioned: list[int] = field(default_factory=list)    # other movies named in the conversation
    people_items: list[int] = field(default_factory=list)  # movies of the directors / actors asked for


@dataclass
class Candidate:
    item_id: int
    sources: list[str]                  # "text", "cf", "liked", "popular", "after", "talked_about", "people"
    text_rank: int | None = None
    cf_rank: int | None = None


@dataclass
class RetrieveResult:
    candidates: list[Candidate]
    counts: dict[str, int]

    @property
    def observation(self) -> str:
        parts = ", ".join(f"{k} {v}" for k, v in self.counts.items())
        return f"retrieved {len(self.candidates)} candidates ({parts})"


@dataclass
class FilterArgs:
    item_ids: list[int]
    exclude_ids: list[int] = field(default_factory=list)
    include_genres: list[str] = field(default_factory=list)
    exclude_genres: list[str] = field(default_factory=list)
    year_min: int | None = None
    year_max: int | None = None


@dataclass
class FilterResult:
    item_ids: list[int]
    removed: dict[str, int]

    @property
    def observation(self) -> str:
        gone = ", ".join(f"{v} {k}" for k, v in self.removed.items() if v) or "none"
        return f"kept {len(self.item_ids)}; removed: {gone}"


@dataclass
class RankArgs:
    candidates: list[Candidate]
    query_text: str = ""
    history: list[int] = field(default_factory=list)
    liked: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)
    include_genres: list[str] = field(default_factory=list)
    moods: list[str] = field(default_factory=list)
    audience: str | None = None
    k: int = 5
    mentioned: list[int] = field(default_factory=list)    # other movies named in the conversation
    people_items: list[int] = field(default_factory=list)  # movies of the directors / actors asked for


@dataclass
class RankedItem:
    item_id: int
    score: float
    parts: dict[str, float]             # each feature's contribution (feature * weight)
    features: dict[str, float]          # the raw features


@dataclass
class RankResult:
    ranked: list[RankedItem]            # every candidate, best first (parts for the top Toolbox.DETAIL)
    k: int

    @property
    def observation(self) -> str:
        top = ", ".join(str(r.item_id) for r in self.ranked[:self.k])
        return f"ranked {len(self.ranked)} candidates; top {self.k}: {top}"


@dataclass
class ExplainArgs:
    item_id: int
    features: dict[str, float] = field(default_factory=dict)
    parts: dict[str, float] = field(default_factory=dict)
    liked: list[int] = field(default_factory=list)
    include_genres: list[str] = field(default_factory=list)
    moods: list[str] = field(default_factory=list)
    people: list[str] = field(default_factory=list)        # directors / actors asked for


@dataclass
class ExplainResult:
    item_id: int
    reason: str

    @property
    def observation(self) -> str:
        return f"{self.item_id}: {self.reason}"


# ---- the toolbox ----------------------------------------------------------------------------

class Toolbox:
    """The four tools over one data set's resources.

    Args:
        resources: ``retrieval.resources.Resources``.
        ranker: the fitted ``Ranker``.
        ilm_scorer: optional ``(state, candidate_ids) -> scores``; the "ilm" feature is 0 without it.
        recorder: optional ``(candidate_ids, features)``, called on every rank call before ranking
            (``dialog.eval.fit_ranker`` collects its training groups so).
    """

    DETAIL = 50

    descriptions = {
        "retrieve": "Find candidate movies: text search of the request, the CF model's next-item "
                    "guesses from the session, neighbours of liked movies, what people recommended after "
                    "the movies named, and the most talked-about, within the constraints.",
        "filter": "Drop candidates that are seen, rejected, shown, or break the genre/year constraints.",
        "rank": "Order candidates by CF score, text match, similarity to liked movies, ILM score, "
                "popularity, what people recommend in conversations and constraint matches, with fitted weights.",
        "explain": "One plain-words reason why a movie was suggested.",
    }

    def __init__(self, resources, ranker: Ranker, ilm_scorer: IlmScorer | None = None,
                 recorder: RankRecorder | None = None):
        self.res = resources
        self.catalog = resources.catalog
        self.ranker = ranker
        self.ilm_scorer = ilm_scorer
        self.recorder = recorder
        items = self.catalog.items
        self.n_items = len(items)
        self.text_embeds = _norm(resources.text_embeds)
        self.cf_embeds = _norm(resources.cf.item_embeddings())
        pop = np.asarray(resources.popularity, dtype=np.float64)
        self.pop_feat = np.log1p(pop) / max(np.log1p(pop.max()), 1e-9)
        self.pop_order = np.argsort(-pop, kind="stable")
        self.use_conversations(resources.conversations)   # None: artefacts without conversation counts
        self.years = items["year"].to_numpy(dtype=np.float64)
        # release year scaled to [0, 1] over 1970-2018 (0 when unknown): people in chats ask for recent films
        self.recency = np.nan_to_num(np.clip((self.years - 1970) / 48, 0, 1), nan=0.0)
        self.genres = [set(g) for g in items["genres"]]
        self.text_lower = [f"{t} {' '.join(tags)} {d}".lower()
                          for t, tags, d in zip(items["title"], items["tags"], items["description"])]
        self._encode_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._score_cache: dict[str, tuple[tuple, np.ndarray]] = {}   # model -> (history, scores)

    # ---- helpers ----
    def use_conversations(self, stats) -> None:
        """Rank with these conversation counts (``retrieval.comention.ConversationStats`` or None)
        from now on: candidates "after" the anchors, the "talked about" list and their features.
        ``dialog.eval.fit_ranker`` swaps in out-of-fold counts while it replays fit samples."""
        if stats is not None and len(stats) != self.n_items:
            raise ValueError(f"conversation counts for {len(stats)} movies, the catalogue has {self.n_items}")
        self.talk = stats
        self.talk_feat = stats.talked_about() if stats is not None else np.zeros(self.n_items)

    def encode(self, text: str) -> np.ndarray:
        """(D,) normalised query embedding, cached by text."""
        if text in self._encode_cache:
            self._encode_cache.move_to_end(text)
            return self._encode_cache[text]
        vec = _norm(np.asarray(self.res.encode([text]), dtype=np.float32)[0])
        self._encode_cache[text] = vec
        if len(self._encode_cache) > 256:
            self._encode_cache.popitem(last=False)
        return vec

    def cf_scores(self, history: list[int]) -> np.ndarray:
        """(N,) standardised CF scores for the session history; zeros without one."""
        return self._standardised("cf", self.res.cf, history)

    def unisrec_scores(self, history: list[int]) -> np.ndarray:
        """(N,) standardised scores of the UniSRec-style text item model for the session history;
        zeros without a history or without that model in the artefacts."""
        return self._standardised("unisrec", self.res.unisrec, history)

    def _standardised(self, name: str, model, history: list[int]) -> np.ndarray:
        if not history or model is None:
            return np.zeros(self.n_items, np.float32)
        key = tuple(history)
        hit = self._score_cache.get(name)
        if hit is not None and hit[0] == key:
            return hit[1]
        s = np.asarray(model.score(np.zeros(1, np.int64), [np.asarray(history, np.int64)])[0], np.float64)
        out = ((s - s.mean()) / max(s.std(), 1e-9)).astype(np.float32)
        self._score_cache[name] = (key, out)
        return out

    # ---- tools ----
    def retrieve(self, args: RetrieveArgs) -> RetrieveResult:
        filters = dict(exclude_ids=set(args.exclude_ids), include_genres=args.include_genres or None,
                       exclude_genres=args.exclude_genres or None, year_min=args.year_min, year_max=args.year_max)
        found: dict[int, Candidate] = {}

        def add(item_id: int, source: str, rank: int) -> None:
            c = found.get(item_id)
            if c is None:
                c = found[item_id] = Candidate(item_id, [])
            if source not in c.sources:
                c.sources.append(source)
            if source == "text" and c.text_rank is None:
                c.text_rank = rank
            if source == "cf" and c.cf_rank is None:
                c.cf_rank = rank

        counts = {}
        if args.query_text.strip():
            hits = self.res.text_index.search(self.encode(args.query_text), args.k_text, **filters)
            for r, (i, _) in enumerate(hits):
                add(i, "text", r)
            counts["text"] = len(hits)
        if args.history:
            scores = self.cf_scores(args.history)
            mask = self.res.cf_index.allowed_mask(**filters)
            allowed = np.flatnonzero(mask)
            top = allowed[np.argsort(-scores[allowed], kind="stable")[:args.k_cf]]
            for r, i in enumerate(top):
                add(int(i), "cf", r)
            counts["cf"] = len(top)
        n_liked = 0
        for seed in list(dict.fromkeys(args.like_items))[-5:]:
            for r, (i, _) in enumerate(self.res.cf_index.search_by_item(seed, args.k_item, **filters)):
                add(i, "liked", r)
                n_liked += 1
            for r, (i, _) in enumerate(self.res.text_index.search_by_item(seed, args.k_item, **filters)):
                add(i, "liked", r)
                n_liked += 1
        if args.like_items:
            counts["liked"] = n_liked
        mask = self.res.text_index.allowed_mask(**filters)
        people = [i for i in dict.fromkeys(args.people_items) if mask[i]]
        for r, i in enumerate(people):
            add(i, "people", r)
        if args.people_items:
            counts["people"] = len(people)
        pops = [int(i) for i in self.pop_order[mask[self.pop_order]][:args.k_popular]]
        for r, i in enumerate(pops):
            add(i, "popular", r)
        counts["popular"] = len(pops)
        if self.talk is not None and not self.talk.is_empty:
            n_after = 0
            for seed in list(dict.fromkeys(list(args.like_items) + list(args.mentioned)))[-8:]:
                for r, i in enumerate(j for j in self.talk.neighbours(seed, args.k_after * 2) if mask[j]):
                    if r >= args.k_after:
                        break
                    add(i, "after", r)
                    n_after += 1
            if n_after:
                counts["after"] = n_after
            talked = self.talk.top(args.k_talked, allowed=mask)
            for r, i in enumerate(talked):
                add(i, "talked_about", r)
            counts["talked_about"] = len(talked)
        return RetrieveResult(list(found.values()), counts)

    def filter(self, args: FilterArgs) -> FilterResult:
        """The hard constraints, checked again on the merged candidates (seen items never pass)."""
        excl = set(args.exclude_ids)
        inc = {g.lower() for g in args.include_genres}
        exc = {g.lower() for g in args.exclude_genres}
        kept, removed = [], {"excluded": 0, "genre": 0, "year": 0}
        for i in args.item_ids:
            g = {x.lower() for x in self.genres[i]}
            y = self.years[i]
            if i in excl:
                removed["excluded"] += 1
            elif (inc and not g & inc) or g & exc:
                removed["genre"] += 1
            elif (args.year_min is not None and not y >= args.year_min) or \
                    (args.year_max is not None and not y <= args.year_max):
                removed["year"] += 1
            else:
                kept.append(int(i))
        return FilterResult(kept, removed)

    def features(self, args: RankArgs, state: DialogState | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(C,) candidate ids and their (C, F) features, F = len(FEATURES).

        Args:
            args: the candidates and what to rank them by.
            state: the conversation's ``DialogState``, which only the ILM scorer reads.
        """
        ids = np.array([c.item_id for c in args.candidates], dtype=np.int64)
        feats = np.zeros((len(ids), len(FEATURES)), dtype=np.float64)
        if not len(ids):
            return ids, feats
        col = {f: j for j, f in enumerate(FEATURES)}
        feats[:, col["cf"]] = self.cf_scores(args.history)[ids] if args.history else 0.0
        feats[:, col["unisrec"]] = self.unisrec_scores(args.history)[ids] if args.history else 0.0
        if args.query_text.strip():
            feats[:, col["text"]] = self.text_embeds[ids] @ self.encode(args.query_text)
        liked = list(dict.fromkeys(args.liked))[-10:]
        if liked:
            feats[:, col["liked_text"]] = (self.text_embeds[ids] @ self.text_embeds[liked].T).max(1)
            feats[:, col["liked_cf"]] = (self.cf_embeds[ids] @ self.cf_embeds[liked].T).max(1)
        rejected = list(dict.fromkeys(args.rejected))[-10:]
        if rejected:
            feats[:, col["rejected_text"]] = (self.text_embeds[ids] @ self.text_embeds[rejected].T).max(1)
        if self.ilm_scorer is not None:
            feats[:, col["ilm"]] = np.asarray(self.ilm_scorer(state, ids), dtype=np.float64)
        feats[:, col["popularity"]] = self.pop_feat[ids]
        if args.people_items:
            feats[:, col["people_match"]] = np.isin(ids, np.asarray(args.people_items, dtype=np.int64))
        if self.talk is not None:
            feats[:, col["talked_about"]] = self.talk_feat[ids]
            feats[:, col["after_liked"]] = self.talk.after(liked, ids) if liked else 0.0
            others = [i for i in dict.fromkeys(args.mentioned) if i not in set(liked)][-10:]
            feats[:, col["after_mentioned"]] = self.talk.after(others, ids) if others else 0.0
            anchors = liked + others
            feats[:, col["together"]] = self.talk.together_with(anchors, ids) if anchors else 0.0
        feats[:, col["recency"]] = self.recency[ids]
        if args.include_genres:
            want = {g.lower() for g in args.include_genres}
            feats[:, col["genre_match"]] = [len({x.lower() for x in self.genres[i]} & want) / len(want) for i in ids]
        if args.moods:
            pats = [re.compile(r"\b%s" % re.escape(m.lower()[:6])) for m in args.moods]
            feats[:, col["mood_match"]] = [sum(bool(p.search(self.text_lower[i])) for p in pats) / len(pats)
                                           for i in ids]
        if args.audience in ("kids", "family"):
            feats[:, col["audience_match"]] = [1.0 if self.genres[i] & {"Children", "Children's", "Animation"}
                                               else -1.0 if self.genres[i] & {"Horror"} else 0.0 for i in ids]
        elif args.audience == "date":
            feats[:, col["audience_match"]] = [1.0 if "Romance" in self.genres[i] else 0.0 for i in ids]
        for r, c in enumerate(args.candidates):
            if c.text_rank is not None:
                feats[r, col["in_text_top"]] = 1.0 / np.log2(2 + c.text_rank)
            if c.cf_rank is not None:
                feats[r, col["in_cf_top"]] = 1.0 / np.log2(2 + c.cf_rank)
            if "liked" in c.sources:
                feats[r, col["from_liked"]] = 1.0
        return ids, feats

    def rank(self, args: RankArgs, state: DialogState | None = None) -> RankResult:
        """Every candidate, best first; ``state`` as for ``features``."""
        ids, feats = self.features(args, state)
        if self.recorder is not None:
            self.recorder(ids, feats)
        order_ids, scores, parts = self.ranker.rank(ids, feats)
        pos = {int(i): r for r, i in enumerate(ids)}
        # Score parts are kept for the top DETAIL candidates (what the "why these?" view shows).
        ranked = [RankedItem(int(i), float(s), {f: round(float(p[j]), 4) for j, f in enumerate(FEATURES)}
                             if r < self.DETAIL else {},
                             {f: round(float(feats[pos[int(i)], j]), 4) for j, f in enumerate(FEATURES)}
                             if r < self.DETAIL else {})
                  for r, (i, s, p) in enumerate(zip(order_ids, scores, parts))]
        return RankResult(ranked, args.k)

    def explain(self, args: ExplainArgs) -> ExplainResult:
        """A one-line reason from the item's strongest contributions."""
        item = self.catalog.items.iloc[args.item_id]
        bits = []
        want = [g for g in item["genres"] if g in set(args.include_genres)]
        genres = want or list(item["genres"])[:2]
        year = "" if item["year"] != item["year"] else f" from {int(item['year'])}"
        bits.append(f"{' / '.join(genres).lower() or 'a film'}{year}")
        parts = args.parts or {}
        liked = list(dict.fromkeys(args.liked))[-10:]
        if liked and (parts.get("liked_text", 0) + parts.get("liked_cf", 0) + parts.get("from_liked", 0)) > 0:
            sims = self.text_embeds[liked] @ self.text_embeds[args.item_id] + \
                self.cf_embeds[liked] @ self.cf_embeds[args.item_id]
            bits.append(f"close to {self.catalog.items.title.iloc[liked[int(np.argmax(sims))]]}, which you liked")
        people = self.res.people
        for name in args.people if people is not None else []:
            roles = people.roles(name, args.item_id)
            if roles:
                bits.append(f"directed by {name}" if "director" in roles else f"with {name}")
        moods = [m for m in args.moods if m.lower()[:6] in self.text_lower[args.item_id]]
        if moods:
            bits.append(f"{', '.join(moods[:2])}")
        tags = list(item["tags"])[:2]
        if not moods and tags:
            bits.append("known for being " + " and ".join(tags))
        if parts.get("cf", 0) > 0.3 and len(bits) < 3:
            bits.append("a strong match for your viewing history")
        if parts.get("popularity", 0) > 0.5 and len(bits) < 3:
            bits.append("widely loved")
        return ExplainResult(args.item_id, "; ".join(bits))


def langchain_tools(toolbox: Toolbox) -> list:
    """The four tools as LangChain ``StructuredTool``s (JSON-able args and results)."""
    from langchain_core.tools import StructuredTool

    def retrieve(query_text: str = "", like_items: list[int] | None = None, history: list[int] | None = None,
                 exclude_ids: list[int] | None = None, include_genres: list[str] | None = None,
                 exclude_genres: list[str] | None = None, year_min: int | None = None,
                 year_max: int | None = None, k_text: int = 150) -> dict:
        r = toolbox.retrieve(RetrieveArgs(query_text, history or [], like_items or [], exclude_ids or [],
                                          include_genres or [], exclude_genres or [], year_min, year_max, k_text))
        return {"observation": r.observation, "candidates": [asdict(c) for c in r.candidates]}

    def filter_items(item_ids: list[int], exclude_ids: list[int] | None = None,
                     include_genres: list[str] | None = None, exclude_genres: list[str] | None = None,
                     year_min: int | None = None, year_max: int | None = None) -> dict:
        r = toolbox.filter(FilterArgs(item_ids, exclude_ids or [], include_genres or [], exclude_genres or [],
                                      year_min, year_max))
        return {"observation": r.observation, "item_ids": r.item_ids, "removed": r.removed}

    def rank(item_ids: list[int], query_text: str = "", liked: list[int] | None = None,
             history: list[int] | None = None, include_genres: list[str] | None = None, k: int = 5) -> dict:
        r = toolbox.rank(RankArgs([Candidate(i, []) for i in item_ids], query_text, history or [], liked or [],
                                  [], include_genres or [], [], None, k))
        return {"observation": r.observation, "ranked": [asdict(x) for x in r.ranked[:k]]}

    def explain(item_id: int, liked: list[int] | None = None, include_genres: list[str] | None = None) -> dict:
        r = toolbox.explain(ExplainArgs(item_id, liked=liked or [], include_genres=include_genres or []))
        return {"observation": r.observation, "reason": r.reason}

    d = Toolbox.descriptions
    return [StructuredTool.from_function(retrieve, name="retrieve", description=d["retrieve"]),
            StructuredTool.from_function(filter_items, name="filter", description=d["filter"]),
            StructuredTool.from_function(rank, name="rank", description=d["rank"]),
            StructuredTool.from_function(explain, name="explain", description=d["explain"])]
