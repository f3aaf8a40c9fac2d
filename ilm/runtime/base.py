"""The one interface every LLM caller uses: ``LLMRuntime``.

A runtime is one loaded LLM behind one backend (llama.cpp, transformers, an OpenAI-compatible
server). It offers, where the backend can:

  render(turns)                 chat turns -> (prompt text, its leading system text)
  stream(prompt, ...)           text pieces as they decode; stop strings; cancel; returns a Generation
  generate(prompt, ...)         the whole Generation at once
  logprobs(prefix, conts)       summed log-probability of each continuation given one shared prefix
  position_logprobs(prompt)     log-softmax over the vocabulary at every position of a prompt
  hidden_states(prompt)         last hidden states at every position (text and vectors)
  embed(texts)                  mean-pooled last hidden states, one row per text

A prompt is a string, or a sequence of parts: strings (text, tokenized as it is) and float arrays
of shape (n, hidden_size): vectors that go into the LLM as input embeddings in place of n tokens
(the ILM's adapter outputs at its ``<item>``/``<user>`` slots). ``capabilities`` names what a
runtime can do; calling what it cannot raises ``Unsupported`` with the reason.
"""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

Part = str | np.ndarray
Prompt = str | Sequence[Part]

GENERATE, LOGPROBS, EMBED, VECTORS = "generate", "logprobs", "embed", "vectors"


class Unsupported(NotImplementedError):
    """The backend cannot do this (e.g. vectors through an HTTP endpoint)."""


class BackendUnavailable(RuntimeError):
    """A backend's library or model cannot be loaded here; the message names the fix."""


@dataclass
class Generation:
    """One generation: the text (cut before any stop string) and how it went."""

    text: str
    prompt_tokens: int = 0
    cached_tokens: int = 0          # prompt tokens whose keys/values came from a cache
    new_tokens: int = 0
    finish: str = "length"          # "stop" (a stop string), "eos", "length", "cancel"
    first_token_s: float | None = None
    seconds: float = 0.0
    truncated_tokens: int = 0       # prompt tokens dropped from the front to fit the context
    truncated_turns: int = 0        # oldest conversation turns left out to fit the context


@dataclass
class SamplingOptions:
    """Per-call generation options; temperature 0 (the default) is greedy."""

    max_new_tokens: int = 128
    stop: list[str] = field(default_factory=list)
    temperature: float = 0.0
    seed: int | None = None

    @classmethod
    def of(cls, max_new_tokens: int = 128, stop: Sequence[str] | None = None,
           temperature: float = 0.0, seed: int | None = None) -> SamplingOptions:
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        return cls(int(max_new_tokens), [s for s in (stop or []) if s], float(temperature), seed)


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the first stop string, and whether one occurred."""
    cuts = [text.find(s) for s in stop if s and s in text]
    return (text[:min(cuts)], True) if cuts else (text, False)


def held_back(text: str, stop: Sequence[str]) -> int:
    """How many trailing characters of ``text`` could be the start of a stop string: a stream
    holds them back until the next piece shows whether the stop string completes."""
    n = 0
    for s in stop:
        for k in range(min(len(s) - 1, len(text)), n, -1):
            if text.endswith(s[:k]):
                n = k
                break
    return n


def collect(gen) -> tuple[list[str], Generation]:
    """Run a ``stream`` generator to its end: (the pieces it yielded, its ``Generation``)."""
    pieces = []
    while True:
        try:
            pieces.append(next(gen))
        except StopIteration as done:
            return pieces, done.value


def n_system_turns(turns: list[dict]) -> int:
    """How many system turns lead the conversation (the last turn never counts)."""
    n = 0
    while n < len(turns) - 1 and turns[n]["role"] == "system":
        n += 1
    return n


def drain(gen) -> Generation:
    """Run a ``stream`` generator to its end; its ``Generation``."""
    return collect(gen)[1]


def sample(logits: np.ndarray, temperature: float, rng: np.random.Generator | None) -> int:
    """Greedy at temperature 0, else a draw from softmax(logits / temperature)."""
    if temperature <= 0 or rng is None:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / temperature
    z -= z.max()
    p = np.exp(z)
    return int(rng.choice(len(p), p=p / p.sum()))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def as_parts(prompt: Prompt) -> list[Part]:
    """A prompt as a list of parts (text and (n, d) float32 vectors); empty strings dropped."""
    parts = [prompt] if isinstance(prompt, str) else list(prompt)
    out: list[Part] = []
    for p in parts:
        if isinstance(p, str):
            if p:
                out.append(p)
        else:
            v = np.asarray(p, dtype=np.float32)
            if v.ndim == 1:
                v = v[None]
            if v.ndim != 2:
                raise ValueError(f"a vector part must have shape (n, hidden_size), got {v.shape}")
            out.append(v)
    return out


class LLMRuntime(ABC):
    """One loaded LLM. Subclasses implement the backend; see the module docstring."""

    backend: str = "?"
    spec: str = "?"
    capabilities: frozenset[str] = frozenset({GENERATE})
    n_ctx: int = 2048
    hidden_size: int = 0

    def __init__(self) -> None:
        # One evaluation at a time on one model. A plain Lock, not an RLock: a stream holds it across
        # its yields, and a server (Gradio) may resume one person's generator on the worker thread
        # that another person's is suspended on; an RLock would let that second stream in (a
        # llama.cpp context used by two at once aborts the process) and could not be released there.
        self.lock = threading.Lock()
        self.notes: list[str] = []     # what a person should know (a fallback backend and its fix)

    # ---- prompts ----
    def render(self, turns: list[dict]) -> tuple[str, str]:
        """Chat turns ``[{"role", "content"}]`` -> (prompt text with the generation prompt, the text
        of its leading system turns: a prefix of the prompt, or ""). The model's chat template
        (``_template``) when it has one, else a plain "role: text" transcript."""
        n = n_system_turns(turns)
        rendered = self._template(turns, n)
        if rendered is None:
            lines = [f"{t['role']}: {t['content']}" for t in turns]
            rendered = "\n".join(lines) + "\nassistant:", ("\n".join(lines[:n]) + "\n" if n else "")
        text, prefix = rendered
        return text, (prefix if prefix and text.startswith(prefix) else "")

    def _template(self, turns: list[dict], n_system: int) -> tuple[str, str] | None:
        """(prompt, system prefix) through the model's chat template; None when it has none."""
        return None

    @abstractmethod
    def tokenize(self, text: str) -> list[int]:
        """Token ids of a prompt text (special tokens in it parsed, no BOS added)."""

    def count_tokens(self, prompt: Prompt) -> int:
        return sum(len(self.tokenize(p)) if isinstance(p, str) else len(p) for p in as_parts(prompt))

    # ---- generation ----
    @abstractmethod
    def stream(self, prompt: Prompt, options: SamplingOptions | None = None,
               cancel: threading.Event | None = None, prefix: str = "") -> Iterator[str]:
        """Text pieces as they decode (never past a stop string); returns the ``Generation``.

        Args:
            prompt: text, or parts (text and vectors).
            options: ``SamplingOptions``.
            cancel: set it (or close the generator) to stop after the current token.
            prefix: the leading text of ``prompt`` that recurs across calls (the system turns):
                its keys/values are cached.
        """

    def generate(self, prompt: Prompt, options: SamplingOptions | None = None,
                 cancel: threading.Event | None = None, prefix: str = "") -> Generation:
        return drain(self.stream(prompt, options, cancel, prefix))

    def fit_turns(self, turns: list[dict], max_new_tokens: int) -> tuple[list[dict], int]:
        """The turns that fit the context with room for ``max_new_tokens``: the oldest turns after
        the system turns are left out first (the last turn always stays; a runtime then drops its
        oldest tokens). Returns (turns, how many were left out)."""
        budget = self.n_ctx - max_new_tokens
        n_system = n_system_turns(turns)
        dropped = 0
        while (len(turns) - n_system > 1
               and self.count_tokens(self.render(turns)[0]) > budget):
            turns = turns[:n_system] + turns[n_system + 1:]
            dropped += 1
        return turns, dropped

    def stream_chat(self, turns: list[dict], options: SamplingOptions | None = None,
                    cancel: threading.Event | None = None) -> Iterator[str]:
        """``stream`` over chat turns ``[{"role", "content"}]``: rendered with the model's chat
        template, the system turns cached as a prefix, the oldest turns left out when the
        conversation does not fit (``Generation.truncated_turns``)."""
        opts = options or SamplingOptions()
        turns, dropped = self.fit_turns(list(turns), opts.max_new_tokens)
        text, prefix = self.render(turns)
        out = yield from self.stream(text, opts, cancel, prefix)
        out.truncated_turns = dropped
        return out

    # ---- scoring and embeddings ----
    def logprobs(self, prefix: Prompt, continuations: Sequence[str]) -> list[float]:
        """Sum of log p(continuation tokens | prefix) for each continuation; the prefix is read once."""
        raise Unsupported(f"the {self.backend} backend does not score continuations")

    def position_logprobs(self, prompt: Prompt) -> np.ndarray:
        """(n_positions, vocab) log-probabilities of the next token after each prompt position."""
        raise Unsupported(f"the {self.backend} backend does not return per-position distributions")

    def hidden_states(self, prompt: Prompt) -> np.ndarray:
        """(n_positions, hidden_size) last-layer hidden states (after the final norm) of a prompt,
        text and vectors alike: what the ILM reads its user vector from."""
        raise Unsupported(f"the {self.backend} backend does not return hidden states")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), hidden_size) mean of the last hidden states over each text's tokens."""
        rows = [self.hidden_states(t if t else " ").mean(0) for t in texts]
        return np.stack(rows).astype(np.float32) if rows else np.zeros((0, self.hidden_size), np.float32)

    def warm_up(self, prompt: Prompt = "Hi", prefix: str = "") -> None:
        """One short generation: caches ``prefix`` and pages the weights in."""
        self.generate(prompt, SamplingOptions(max_new_tokens=1), prefix=prefix)

    def describe(self) -> dict:
        return {"backend": self.backend, "model": self.spec, "n_ctx": self.n_ctx,
                "capabilities": sorted(self.capabilities)}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free the model (backends that hold native memory override this)."""
