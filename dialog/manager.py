"""The dialog manager: one message in, a new state, a reply and suggestions out.

``respond(state, text)`` is pure with respect to ``state``: it copies it, and every step is
recorded in the turn's trace:
  1. bad input: empty messages get a notice; long ones are cut to ``MAX_MESSAGE_CHARS`` (with a notice);
  2. understand the message (LLM JSON with schema check and one repair, or the rules) and resolve
     every title through the catalogue's title lookup;
  3. update the state (likes, dislikes, seen, rejected, constraints);
  4. the policy picks an action: ask (at most once), explain, refine, recommend or notice;
  5. tools: retrieve (text + CF + neighbours of liked movies + popular, within the constraints),
     filter (nothing seen, rejected or shown passes), rank (fitted weights), explain;
  6. reply: the template writer, or the LLM writer with its title check.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dialog.policy import RulePolicy
from dialog.ranker import Ranker, RankerWeights, default_weights_path
from dialog.reply import (
    RETRACT,
    LLMReplyWriter,
    ReplyChecker,
    ReplyItem,
    explain_reply,
    request_summary,
    template_reply,
)
from dialog.state import DialogState
from dialog.tools import ExplainArgs, FilterArgs, RankArgs, RankRecorder, RetrieveArgs, Toolbox
from dialog.understand import LLMUnderstander, TitleFinder, Understanding, parse_message, truncate
from dialog.understand.people import read_people
from ilm.config import RuntimeConfig

DEFAULT_K = 5
LIKED_SEED = 10          # a returning user's latest positively rated movies become "liked"


@dataclass
class Suggestion:
    item_id: int
    movielens_id: int
    title: str
    year: int | None
    genres: list[str]
    description: str
    reason: str
    score: float
    score_parts: dict[str, float]


@dataclass
class TraceEntry:
    tool: str
    args: dict
    count: int
    summary: str
    ms: float


@dataclass
class Turn:
    state: DialogState
    reply: str
    suggestions: list[Suggestion]
    action: str
    trace: list[TraceEntry]
    candidates: list[dict] = field(default_factory=list)
    notice: str | None = None
    timings: dict[str, float] = field(default_factory=dict)   # ms: "pipeline" (all but generation), "reply", "total"


class _Timer:
    def __init__(self):
        self.t = time.perf_counter()

    def ms(self) -> float:
        now = time.perf_counter()
        out, self.t = (now - self.t) * 1e3, now
        return round(out, 2)


class DialogManager:
    """See the module docstring. Build it with ``build_manager``.

    Args:
        resources: ``retrieval.resources.Resources``.
        toolbox: the tools over the same resources.
        policy: anything with ``next_action(state, understanding, has_history) -> Action``;
            default ``RulePolicy``.
        understander: the LLM understanding (``LLMUnderstander``); None: the rules only.
        reply_writer: the LLM reply writer; None: template replies.
        k: suggestions per turn.
        finder: the title finder over ``resources.titles`` (the one ``understander`` and
            ``reply_writer`` use); built here when not given.
    """

    def __init__(self, resources, toolbox: Toolbox, policy=None, understander: LLMUnderstander | None = None,
                 reply_writer: LLMReplyWriter | None = None, k: int = DEFAULT_K, finder: TitleFinder | None = None):
        self.res = resources
        self.catalog = resources.catalog
        self.tools = toolbox
        self.policy = policy or RulePolicy()
        self.finder = finder or TitleFinder(resources.titles)
        self.genres = self.catalog.genres
        self.max_year = int(np.nanmax(self.catalog.items["year"].to_numpy(dtype=float)))
        self.understander = understander
        self.reply_writer = reply_writer
        self.k = k
        self.notes: list[str] = []      # for the person running it (e.g. a fallback LLM backend)

    # ---- users ----
    def _history(self, user_id: int | None) -> list[int]:
        if user_id is None:
            return []
        return [int(i) for i in self.res.user_history(user_id)]

    def new_state(self, user_id: int | None = None) -> DialogState:
        """A fresh conversation; a returning MovieLens user starts from their history."""
        state = DialogState()
        if user_id is None:
            return state
        try:
            u = self.res.split.user_index(int(user_id))
        except (KeyError, ValueError, TypeError) as e:
            raise ValueError(f"unknown MovieLens user id {user_id!r}: {e}") from None
        hist = self.res.split.train[u]
        ratings = self.res.split.train_ratings[u]
        state.user_id = int(user_id)
        state.seen = [int(i) for i in hist]
        state.liked = [int(i) for i in hist[ratings >= 4][-LIKED_SEED:]]
        state.disliked = [int(i) for i in hist[ratings <= 2][-LIKED_SEED:]]
        return state

    def user_history(self, user_id: int, n: int = 10) -> list[str]:
        """Display titles of a MovieLens user's latest items (latest first)."""
        try:
            hist = self._history(int(user_id))
        except KeyError as e:
            raise ValueError(f"unknown MovieLens user id {user_id!r}: {e}") from None
        return [self.catalog.display(i) for i in reversed(hist[-n:])]

    def warm_up(self) -> float:
        """Prepare the LLM reply writer (the chat model's prefix cache, bitsandbytes' first-call
        repacking) so that the first person's turn does not pay for it. Returns the seconds taken."""
        t0 = time.perf_counter()
        if self.reply_writer is not None:
            self.reply_writer.checker.common_words      # built on first use otherwise
            self.reply_writer.warm_up()
        return round(time.perf_counter() - t0, 3)

    # ---- the turn ----
    def respond(self, state: DialogState, text: str) -> Turn:
        turn = None
        for part in self.stream(state, text):
            if isinstance(part, Turn):
                turn = part
        return turn

    def feedback(self, state: DialogState, item_id: int, kind: str) -> Turn:
        """A button press ("like", "dislike", "seen") on a suggestion, as if typed."""
        if kind not in ("like", "dislike", "seen"):
            raise ValueError(f"feedback kind must be like, dislike or seen, got {kind!r}")
        item_id = int(item_id)
        title = self.catalog.display(item_id)
        text = {"like": f"More like {title}, please.",
                "dislike": f"Not {title}.",
                "seen": f"I've already seen {title}."}[kind]
        new = state.copy()
        u = Understanding(query_text="", source="button")
        if item_id in new.last_suggestions:
            pos = new.last_suggestions.index(item_id)
            {"like": u.like_refs, "dislike": u.dislike_refs, "seen": u.seen_refs}[kind].append(pos)
        elif kind == "like":
            new.liked.append(item_id)
            new.constraints.like_items.append(item_id)
        elif kind == "dislike":
            new.disliked.append(item_id)
        else:
            new.seen.append(item_id)
        return self._run(new, text, understood=u, trace_note=f"feedback {kind} on {title}")

    def stream(self, state: DialogState, text: str) -> Iterator[str | Turn]:
        yield from self._run_stream(state.copy(), text)

    def _run(self, new: DialogState, text: str, understood: Understanding | None = None,
             trace_note: str | None = None) -> Turn:
        turn = None
        for part in self._run_stream(new, text, understood, trace_note):
            if isinstance(part, Turn):
                turn = part
        return turn

    def _run_stream(self, new: DialogState, text, understood: Understanding | None = None,
                    trace_note: str | None = None) -> Iterator[str | Turn]:
        t_start = time.perf_counter()
        trace: list[TraceEntry] = []
        # 1. bad input
        text, notice = truncate(text)
        if not text.strip():
            reply = "Tell me what you feel like watching: a movie you loved, a genre, a mood or a decade."
            yield reply
            yield Turn(new, reply, [], "notice", trace, [], "Your message was empty.",
                       {"pipeline": _ms(t_start), "total": _ms(t_start)})
            return
        new.turn += 1
        new.messages.append({"role": "user", "text": text})
        notes: list[str] = []

        # 2. understand
        timer = _Timer()
        if understood is None:
            log: list[str] = []
            if self.understander is not None:
                u, log = self.understander.understand(text, [self.catalog.display(i) for i in new.last_suggestions])
            else:
                u = parse_message(text, self.finder, self.genres, len(new.last_suggestions), self.max_year)
            read_people(u, text, self.res.people)
            trace.append(TraceEntry("understand", {"source": u.source}, len(u.titles),
                                    "; ".join(log + [_summarise(u, self.catalog)]), timer.ms()))
        else:
            u = understood
            trace.append(TraceEntry("understand", {"source": "button"}, 0, trace_note or "", timer.ms()))

        if u.reset:
            fresh = self.new_state(new.user_id)
            fresh.turn = new.turn
            fresh.messages = new.messages
            new = fresh

        # 3. state update
        notes += self._apply(new, u)
        trace.append(TraceEntry("update_state", {}, 0, new.describe(self.catalog).replace("\n", " | "), timer.ms()))

        # 4. policy
        action = self.policy.next_action(new, u, bool(new.user_id is not None))
        if u.injection:
            notes.insert(0, "I can only help with finding movies from the catalogue, so I'll stick to that.")
        if u.nonexistent:
            notes.insert(0, "I only suggest real movies from the catalogue.")
        trace.append(TraceEntry("policy", {"action": action.kind}, 0, action.why, timer.ms()))

        # 5. tools, as the action needs them
        suggestions: list[Suggestion] = []
        candidates: list[dict] = []
        reply_items: list[ReplyItem] = []
        if action.kind == "ask":
            new.asked_clarification = True
            reply = "\n".join(notes + [action.question])
        elif action.kind == "notice":
            if u.reset:
                reply = "Okay, starting over. What are you in the mood for?"
            else:
                reply = "\n".join(notes + ["Tell me what kind of movie you're after, or a movie you loved."])
        elif action.kind == "explain":
            for item_id in action.explain_ids:
                r = self.tools.explain(ExplainArgs(item_id, liked=new.liked + new.constraints.like_items,
                                                   include_genres=new.constraints.include_genres,
                                                   moods=new.constraints.moods,
                                                   parts={"liked_text": 1.0} if new.liked else {}))
                reply_items.append(self._reply_item(item_id, r.reason))
                suggestions.append(self._suggestion(item_id, r.reason, 0.0, {}))
            trace.append(TraceEntry("explain", {"item_ids": action.explain_ids}, len(reply_items),
                                    f"explained {len(reply_items)} movies", timer.ms()))
            reply = explain_reply(reply_items)
        else:
            suggestions, candidates = self._recommend(new, trace, timer, self.k)
            reply_items = [self._reply_item(s.item_id, s.reason) for s in suggestions]
            if not suggestions:
                notes.append("I couldn't find anything that fits all of that; could you relax a constraint?")
            new.last_suggestions = [s.item_id for s in suggestions]
            new.shown.extend(new.last_suggestions)
            reply = None
        pipeline_ms = _ms(t_start)

        # 6. reply
        if action.kind in ("recommend", "refine"):
            if self.reply_writer is not None and reply_items:
                log: list[str] = []
                writer = "llm"
                try:
                    gen = self.reply_writer.stream(text, reply_items, notes, new.turn, log,
                                                  request=request_summary(new.constraints))
                    while True:
                        try:
                            yield next(gen)
                        except StopIteration as stop:
                            reply = stop.value
                            break
                except Exception as e:      # the LLM failed mid-reply: the template answers instead
                    log.append(f"reply: the LLM failed ({type(e).__name__}: {str(e)[:160]}); used the template")
                    writer = "template (LLM failed)"
                    reply = template_reply(reply_items, notes, new.turn)
                    yield RETRACT
                    yield from _chunks(reply)
                trace.append(TraceEntry("reply", {"writer": writer}, len(reply_items), "; ".join(log), timer.ms()))
            else:
                reply = template_reply(reply_items, notes, new.turn)
                trace.append(TraceEntry("reply", {"writer": "template"}, len(reply_items), "", timer.ms()))
                yield from _chunks(reply)
        else:
            yield from _chunks(reply)
        new.messages.append({"role": "assistant", "text": reply})
        timings = {"pipeline": pipeline_ms, "reply": round(_ms(t_start) - pipeline_ms, 2), "total": _ms(t_start)}
        yield Turn(new, reply, suggestions, action.kind, trace, candidates, notice, timings)

    # ---- offline replay (the batch command) ----
    def observe_user(self, state: DialogState, text: str) -> DialogState:
        """Apply a user message to the state without answering it (understanding + update only)."""
        new = state.copy()
        text, _ = truncate(text)
        if not text.strip():
            return new
        new.turn += 1
        new.messages.append({"role": "user", "text": text})
        u = parse_message(text, self.finder, self.genres, len(new.last_suggestions), self.max_year)
        read_people(u, text, self.res.people)
        if u.reset:
            fresh = self.new_state(new.user_id)
            fresh.messages, fresh.turn = new.messages, new.turn
            new = fresh
        self._apply(new, u)
        return new

    def observe_assistant(self, state: DialogState, text: str) -> DialogState:
        """Record an assistant message someone else wrote: the catalogue titles it names (in order)
        become the last suggestions and count as shown."""
        new = state.copy()
        mentions, _ = self.finder.find(text or "")
        ids = []
        for m in mentions:
            item = m.item_id if m.item_id is not None else (m.candidates[0] if m.candidates else None)
            if item is not None and item not in ids:
                ids.append(int(item))
        new.messages.append({"role": "assistant", "text": text or ""})
        if ids:
            new.last_suggestions = ids
            new.shown.extend(i for i in ids if i not in new.shown)
        return new

    def recommend(self, state: DialogState, k: int | None = None) -> list[Suggestion]:
        """The top-k suggestions for a state (``k`` default: the manager's), without changing it."""
        suggestions, _ = self._recommend(state.copy(), [], _Timer(), k or self.k)
        return suggestions

    # ---- helpers ----
    def _apply(self, s: DialogState, u: Understanding) -> list[str]:
        """Apply an understanding to the state; returns notes for the reply (unknown titles...)."""
        notes = []
        c = s.constraints
        last = list(s.last_suggestions)
        for m in u.titles:
            item_id = m.item_id
            if item_id is None and m.candidates:
                item_id = m.candidates[0]
                notes.append(f"I took \"{m.text}\" to mean {self.catalog.display(item_id)}.")
            if item_id is None:
                notes.append(f"I couldn't find \"{m.text}\" in my catalogue (it has {len(self.catalog):,} movies "
                             f"up to {self.max_year}), so I'll go by the rest of what you said.")
                continue
            if m.kind in ("liked", "mention"):
                if item_id not in s.liked:
                    s.liked.append(item_id)
                if item_id not in c.like_items:
                    c.like_items.append(item_id)
            elif m.kind == "disliked":
                s.disliked.append(item_id)
                if item_id in last:
                    s.rejected.append(item_id)
            elif m.kind == "seen":
                s.seen.append(item_id)
        for pos in u.like_refs:
            if pos < len(last):
                s.liked.append(last[pos])
                c.like_items.append(last[pos])
        for pos in u.dislike_refs:
            if pos < len(last):
                s.rejected.append(last[pos])
        for pos in u.seen_refs:
            if pos < len(last):
                s.seen.append(last[pos])
        if u.reject_all:
            s.rejected.extend(i for i in last if i not in s.liked and i not in s.seen)
        for g in u.include_genres:
            if g in c.exclude_genres and g not in u.exclude_genres:
                c.exclude_genres.remove(g)
            if g not in c.include_genres:
                c.include_genres.append(g)
        for g in u.exclude_genres:
            if g in c.include_genres and g not in u.include_genres:
                c.include_genres.remove(g)
            if g not in c.exclude_genres:
                c.exclude_genres.append(g)
        if u.year_min is not None or u.year_max is not None:
            c.year_min, c.year_max = u.year_min, u.year_max
        for m in u.moods:
            if m not in c.moods:
                c.moods.append(m)
        c.moods = c.moods[-8:]
        if u.audience:
            c.audience = u.audience
        if u.people:            # "movies by X" asks for X now, instead of whoever was asked for before
            c.people = list(u.people)
        for name in u.unknown_people:
            notes.append(f"I don't know {name}'s films: my catalogue has directors and cast for only "
                         f"{self._people_coverage()} of its movies, so I'll go by the rest of what you said.")
        if u.but:
            c.but = u.but
        for key in ("liked", "disliked", "seen", "rejected"):
            setattr(s, key, list(dict.fromkeys(getattr(s, key))))
        c.like_items = list(dict.fromkeys(c.like_items))
        if u.query_text:
            s.messages[-1]["query"] = u.query_text
        return notes

    def _people_coverage(self) -> str:
        p = self.res.people
        if p is None:
            return "none"
        return f"{p.coverage()['items_with_person']:,} (mostly from before 1999)"

    def _query(self, s: DialogState) -> str:
        c = s.constraints
        queries = [m.get("query", "") for m in s.messages if m.get("role") == "user"][-4:]
        parts = [" ".join(c.include_genres), " ".join(c.moods), c.but or ""] + queries
        return re.sub(r"\s+", " ", " ".join(p for p in parts if p)).strip()

    def _recommend(self, s: DialogState, trace: list[TraceEntry], timer: _Timer, k: int
                   ) -> tuple[list[Suggestion], list[dict]]:
        c = s.constraints
        inc, exc, ymin, ymax = list(c.include_genres), list(c.exclude_genres), c.year_min, c.year_max
        clash = set(inc) & set(exc)
        if clash:       # still contradictory after the one question: drop the contradiction
            inc = [g for g in inc if g not in clash]
            exc = [g for g in exc if g not in clash]
        if ymin is not None and ymax is not None and ymin > ymax:
            ymin, ymax = ymax, ymin
        history = self._history(s.user_id)
        session = [i for i in s.liked if i not in set(history)]
        history = history + session
        query = self._query(s)
        exclude = sorted(s.excluded())
        # the other movies named so far (seen, or named by the recommender's side): people recommend
        # what goes with them (retrieval.comention)
        mentioned = [i for i in dict.fromkeys(s.seen + s.shown) if i not in set(s.disliked + s.rejected)][-10:]
        people_items = sorted({i for name in c.people for i in self.res.people.items(name)}) \
            if c.people and self.res.people is not None else []
        rargs = RetrieveArgs(query, history, list(c.like_items) or list(s.liked[-3:]), exclude, inc, exc, ymin, ymax,
                             mentioned=mentioned, people_items=people_items)
        r = self.tools.retrieve(rargs)
        trace.append(TraceEntry("retrieve", {"query_text": query[:200], "history_len": len(history),
                                             "like_items": rargs.like_items[-5:], "n_excluded": len(exclude),
                                             "include_genres": inc, "exclude_genres": exc,
                                             "year_min": ymin, "year_max": ymax},
                                len(r.candidates), r.observation, timer.ms()))
        f = self.tools.filter(FilterArgs([x.item_id for x in r.candidates], exclude, inc, exc, ymin, ymax))
        trace.append(TraceEntry("filter", {"n_in": len(r.candidates)}, len(f.item_ids), f.observation, timer.ms()))
        keep = set(f.item_ids)
        cands = [x for x in r.candidates if x.item_id in keep]
        rk = self.tools.rank(RankArgs(cands, query, history, s.liked + c.like_items, s.rejected + s.disliked,
                                      inc, c.moods, c.audience, k, mentioned=mentioned,
                                      people_items=people_items), state=s)
        trace.append(TraceEntry("rank", {"n": len(cands), "k": k}, len(rk.ranked), rk.observation, timer.ms()))
        sources = {x.item_id: x.sources for x in cands}
        top = rk.ranked[:k]
        suggestions = []
        for item in top:
            reason = self.tools.explain(ExplainArgs(item.item_id, item.features, item.parts,
                                                    s.liked + c.like_items, inc, c.moods,
                                                    people=list(c.people))).reason
            suggestions.append(self._suggestion(item.item_id, reason, item.score, item.parts))
        trace.append(TraceEntry("explain", {"item_ids": [x.item_id for x in top]}, len(top),
                                f"wrote {len(top)} reasons", timer.ms()))
        candidates = [{"item_id": x.item_id, "title": self.catalog.display(x.item_id), "score": round(x.score, 4),
                       "sources": sources.get(x.item_id, []), "parts": x.parts} for x in rk.ranked[:30]]
        return suggestions, candidates

    def _reply_item(self, item_id: int, reason: str) -> ReplyItem:
        row = self.catalog.items.iloc[int(item_id)]
        return ReplyItem(int(item_id), row.title, None if row.year != row.year else int(row.year), reason)

    def _suggestion(self, item_id: int, reason: str, score: float, parts: dict) -> Suggestion:
        row = self.catalog.items.iloc[int(item_id)]
        return Suggestion(int(item_id), int(row.movielens_id), row.title,
                          None if row.year != row.year else int(row.year), list(row.genres),
                          row.description, reason, float(score), dict(parts))


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1e3, 2)


def _chunks(text: str) -> Iterator[str]:
    yield from re.findall(r"\S+\s*|\s+", text)


def _summarise(u: Understanding, catalog) -> str:
    bits = []
    for m in u.titles:
        name = catalog.display(m.item_id) if m.item_id is not None else (
            f"ambiguous ({len(m.candidates)})" if m.candidates else "not in catalogue")
        bits.append(f"{m.kind} '{m.text}' -> {name}")
    for key in ("include_genres", "exclude_genres", "moods", "people", "unknown_people", "like_refs", "dislike_refs",
                "seen_refs"):
        v = getattr(u, key)
        if v:
            bits.append(f"{key}={v}")
    if u.year_min is not None or u.year_max is not None:
        bits.append(f"years {u.year_min}..{u.year_max}")
    for flag in ("reject_all", "wants_explanation", "injection", "nonexistent", "reset"):
        if getattr(u, flag):
            bits.append(flag)
    return ", ".join(bits) or "nothing specific"


def build_manager(resources, llm: str | None = None, *, weights: str | Path | RankerWeights | None = None,
                  runtime: RuntimeConfig | None = None, chat=None, ilm_scorer: Callable | None = None,
                  ilm: str | Path | None = None,
                  llm_understanding: bool = False, reply_mode: str = "intro", reply_tokens: int | None = None,
                  k: int = DEFAULT_K,
                  policy=None, recorder: RankRecorder | None = None) -> DialogManager:
    """The recommender over loaded resources.

    Args:
        resources: ``retrieval.resources.Resources``.
        llm: None (rules + template replies), or a spec for ``ilm.runtime.load_runtime``
            ("qwen2.5-coder-1.5b", "smollm2-135m", a GGUF, a local directory); loaded, then warmed
            up (``DialogManager.warm_up``).
        weights: ranker weights (a JSON path or ``RankerWeights``); default: the fitted weights
            shipped in ``dialog/ranker_weights/<dataset>.json`` (``<dataset>_ilm.json`` with an
            ILM), else the unfitted prior (a warning).
        runtime: how to load ``llm`` (backend, quantization, context; ``ilm.config.RuntimeConfig``).
        chat: an already built LangChain chat model (overrides ``llm``; tests pass a tiny one).
        ilm_scorer: ``(state, candidate_ids) -> scores`` from the ILM; the feature is 0 without it.
        ilm: a dialog ILM checkpoint (``training.ilm_dialog``) to load as ``ilm_scorer``.
        llm_understanding: also extract state updates with the LLM (JSON, schema check, one repair,
            then the rules). Off by default: on CPU it adds a second generation per turn, which
            breaks the reply budget, and it reads messages worse than the rules (measured by
            ``dialog.eval.bench_understanding``: reports/understanding_ml-latest-small.md); the
            rules run either way as the fallback.
        reply_mode: "intro" (the LLM writes a checked opening sentence, the template lists the
            movies with their reasons; fits the CPU budget: reports/sim_latency_ml-latest-small_*.md)
            or "full" (the LLM writes the whole reply, checked against the chosen titles). See
            ``dialog.reply.LLMReplyWriter``.
        reply_tokens: the reply writer's generation budget (default: the writer's, per mode).
        k: suggestions per turn.
        policy: see ``DialogManager``; default ``RulePolicy``.
        recorder: ``(candidate_ids, features)`` called on every rank call (``Toolbox``).
    """
    if ilm is not None:
        if ilm_scorer is not None:
            raise ValueError("give ilm (a checkpoint) or ilm_scorer, not both")
        from ilm.score import ILMScorer
        ilm_scorer = ILMScorer.from_checkpoint(ilm, text_embeds=resources.text_embeds)
    shipped = default_weights_path(resources.dataset, ilm=ilm_scorer is not None)
    if isinstance(weights, RankerWeights):
        w = weights
    elif weights is not None:
        w = RankerWeights.load(weights)
    elif shipped.is_file():
        w = RankerWeights.load(shipped)
    else:
        import warnings
        warnings.warn(f"no fitted ranker weights for {resources.dataset} ({shipped}); "
                      f"using the unfitted prior. Fit them with `python -m dialog.eval.fit_ranker`.", stacklevel=2)
        w = RankerWeights.prior()
    toolbox = Toolbox(resources, Ranker(w), ilm_scorer, recorder)
    loaded = chat is None and llm is not None
    if loaded:
        from dialog.llm import LocalChatModel
        chat = LocalChatModel.load(llm, runtime)
    finder = TitleFinder(resources.titles)
    understander = reply_writer = None
    if chat is not None:
        if llm_understanding:
            understander = LLMUnderstander(chat, finder, resources.catalog.genres)
        reply_writer = LLMReplyWriter(chat, ReplyChecker(finder), mode=reply_mode, max_new_tokens=reply_tokens)
    manager = DialogManager(resources, toolbox, policy=policy, understander=understander,
                            reply_writer=reply_writer, k=k, finder=finder)
    manager.notes = list(getattr(getattr(chat, "runtime", None), "notes", []))
    if loaded:
        manager.warm_up()
    return manager
