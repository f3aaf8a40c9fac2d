"""The ``openai`` backend: an OpenAI-compatible HTTP endpoint (a llama.cpp server, vLLM, ...) on
another machine, for when one machine is not enough. Text only: chat turns go to
``/v1/chat/completions`` (the server applies the model's chat template), raw prompts to
``/v1/completions``; both stream. Vectors, per-position distributions and embeddings need the
weights in this process (the llamacpp or transformers backend).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from ilm.runtime.base import (
    GENERATE,
    BackendUnavailable,
    Generation,
    LLMRuntime,
    Prompt,
    SamplingOptions,
    Unsupported,
    as_parts,
    cut_at_stop,
    held_back,
)


class OpenAIRuntime(LLMRuntime):
    """Args:
        base_url: e.g. ``http://127.0.0.1:8000/v1``.
        model: the model name the server expects (llama.cpp's server accepts any).
        n_ctx: the server's context length, for the turn budget.
        timeout: seconds per request.
    """

    backend = "openai"
    capabilities = frozenset({GENERATE})

    def __init__(self, base_url: str, model: str = "local", n_ctx: int = 2048, timeout: float = 120.0,
                 api_key: str = "not-needed"):
        super().__init__()
        try:
            import openai
        except ImportError as e:
            raise BackendUnavailable(f"the openai backend needs the `openai` package: {e}") from e
        # render() is the base class's plain transcript: only used to count tokens, the server
        # applies the model's chat template itself.
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=0)
        self.spec, self.base_url, self.n_ctx = model, base_url, n_ctx

    def tokenize(self, text: str) -> list[int]:
        """An estimate (~4 characters a token): the tokenizer is on the server."""
        return list(range((len(text) + 3) // 4))

    def _run(self, pieces, opts: SamplingOptions, cancel: threading.Event, n_prompt: int,
             t0: float) -> Iterator[str]:
        text, sent, first, finish, n_new = "", 0, None, "length", 0
        try:
            for chunk in pieces:
                if cancel.is_set():
                    finish = "cancel"
                    break
                choice = chunk.choices[0] if chunk.choices else None
                if choice is None:
                    continue
                delta = getattr(choice, "delta", None)
                piece = (delta.content if delta is not None else getattr(choice, "text", "")) or ""
                n_new += 1 if piece else 0
                text += piece
                text, stopped = cut_at_stop(text, opts.stop)
                upto = len(text) if stopped else len(text) - held_back(text, opts.stop)
                if upto > sent:
                    first = first if first is not None else time.perf_counter() - t0
                    yield text[sent:upto]
                    sent = upto
                if stopped:
                    finish = "stop"
                    break
                if choice.finish_reason:
                    finish = "eos" if choice.finish_reason == "stop" else "length"
        finally:
            if hasattr(pieces, "close"):
                pieces.close()
        if finish != "stop" and len(text) > sent:
            yield text[sent:]
        return Generation(text=text, prompt_tokens=n_prompt, new_tokens=n_new, finish=finish,
                          first_token_s=first, seconds=time.perf_counter() - t0)

    def _common(self, opts: SamplingOptions) -> dict:
        kw = {"model": self.spec, "max_tokens": opts.max_new_tokens, "temperature": opts.temperature,
              "stream": True}
        if opts.stop:
            kw["stop"] = opts.stop[:4]          # the API takes at most 4; the rest are cut here
        if opts.seed is not None:
            kw["seed"] = int(opts.seed)
        return kw

    def stream(self, prompt: Prompt, options: SamplingOptions | None = None,
               cancel: threading.Event | None = None, prefix: str = "") -> Iterator[str]:
        parts = as_parts(prompt)
        if not all(isinstance(p, str) for p in parts):
            raise Unsupported("the openai backend takes text only; vectors need llamacpp or transformers")
        opts, t0 = options or SamplingOptions(), time.perf_counter()
        text = "".join(parts)
        pieces = self.client.completions.create(prompt=text, **self._common(opts))
        return (yield from self._run(pieces, opts, cancel or threading.Event(), self.count_tokens(text), t0))

    def stream_chat(self, turns: list[dict], options: SamplingOptions | None = None,
                    cancel: threading.Event | None = None) -> Iterator[str]:
        opts, t0 = options or SamplingOptions(), time.perf_counter()
        turns, dropped = self.fit_turns(list(turns), opts.max_new_tokens)
        pieces = self.client.chat.completions.create(messages=turns, **self._common(opts))
        out = yield from self._run(pieces, opts, cancel or threading.Event(),
                                   self.count_tokens(self.render(turns)[0]), t0)
        out.truncated_turns = dropped
        return out
