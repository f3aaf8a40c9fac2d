"""The LLM as a LangChain chat model (``BaseChatModel``), over the one runtime interface
(``ilm.runtime.LLMRuntime``: llama.cpp, transformers or an OpenAI-compatible endpoint).

Messages become chat turns; the runtime renders them with the model's chat template, caches the keys
and values of the leading system text (the same on every turn), and leaves out the oldest turns
when a conversation does not fit its context (``response_metadata["truncated_turns"]``). ``invoke``
generates greedily unless asked to sample (``do_sample=True, seed=...``); ``stream`` yields each
new piece of text as soon as it decodes, and closing the stream early stops generation after the
current token. Per-call keyword arguments: ``max_new_tokens``, ``do_sample``, ``temperature``,
``seed``; ``stop`` strings end generation where they first appear (not returned).
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict

from ilm.runtime import Generation, RuntimeConfig, SamplingOptions, drain, load_runtime

_ROLES = {"human": "user", "ai": "assistant", "system": "system"}


def to_turns(messages: list[BaseMessage]) -> list[dict]:
    return [{"role": _ROLES.get(m.type, "user"), "content": str(m.content)} for m in messages]


def generation_metadata(g: Generation, backend: str) -> dict:
    return {"backend": backend, "prompt_tokens": g.prompt_tokens, "cached_prompt_tokens": g.cached_tokens,
            "new_tokens": g.new_tokens, "finish": g.finish, "truncated_turns": g.truncated_turns,
            "truncated_tokens": g.truncated_tokens, "first_token_s": g.first_token_s, "seconds": g.seconds}


class LocalChatModel(BaseChatModel):
    """An ``LLMRuntime`` behind LangChain's chat-model interface."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    runtime: Any
    max_new_tokens: int = 128
    temperature: float = 0.7        # when sampling (do_sample=True)

    @classmethod
    def load(cls, spec: str, cfg: RuntimeConfig | None = None, **kw) -> LocalChatModel:
        """Load ``spec`` through ``ilm.runtime.load_runtime`` (packaged or local models only)."""
        return cls(runtime=load_runtime(spec, cfg), **kw)

    @classmethod
    def from_hf(cls, model, tokenizer, spec: str = "local", prefix_cache: bool = True,
                **kw) -> LocalChatModel:
        """Over a loaded Hugging Face model (the tests' tiny one) through the transformers backend."""
        from ilm.runtime.hf import TransformersRuntime
        return cls(runtime=TransformersRuntime(model, tokenizer, spec=spec, prefix_cache=prefix_cache), **kw)

    @property
    def spec(self) -> str:
        return self.runtime.spec

    @property
    def backend(self) -> str:
        return self.runtime.backend

    @property
    def _llm_type(self) -> str:
        return f"local-{self.runtime.backend}"

    @property
    def _identifying_params(self) -> dict:
        return {"spec": self.runtime.spec, "backend": self.runtime.backend, "max_new_tokens": self.max_new_tokens}

    def _options(self, stop, kwargs) -> SamplingOptions:
        sampling = bool(kwargs.get("do_sample", False))
        return SamplingOptions.of(
            max_new_tokens=int(kwargs.get("max_new_tokens", self.max_new_tokens)), stop=stop,
            temperature=float(kwargs.get("temperature", self.temperature)) if sampling else 0.0,
            seed=kwargs.get("seed"))

    def warm_up(self, messages: list[BaseMessage]) -> None:
        """Cache these messages' system text and page the weights in (one token)."""
        drain(self.runtime.stream_chat(to_turns(messages), SamplingOptions(max_new_tokens=1)))

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        g = drain(self.runtime.stream_chat(to_turns(messages), self._options(stop, kwargs)))
        return ChatResult(generations=[ChatGeneration(message=AIMessage(
            g.text, response_metadata=generation_metadata(g, self.runtime.backend)))])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        """Piece-by-piece text; closing the stream early stops generation after the current token."""
        cancel = threading.Event()
        opts = self._options(stop, kwargs)
        turns, dropped = self.runtime.fit_turns(to_turns(messages), opts.max_new_tokens)
        if dropped:     # said at once: a reader that stops early still learns it
            yield ChatGenerationChunk(message=AIMessageChunk(content="", response_metadata={
                "truncated_turns": dropped}))
        lock = getattr(self.runtime, "lock", None)
        if lock is not None:        # another reply is being generated: say so before waiting for it
            if lock.acquire(blocking=False):
                lock.release()
            else:
                yield ChatGenerationChunk(message=AIMessageChunk(content="", response_metadata={"queued": True}))
        gen = self.runtime.stream_chat(turns, opts, cancel)
        try:
            while True:
                try:
                    piece = next(gen)
                except StopIteration as done:
                    g = done.value
                    break
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
                if run_manager:
                    run_manager.on_llm_new_token(piece, chunk=chunk)
                yield chunk
        finally:
            cancel.set()
            gen.close()
        # the last chunk carries how it went (LangChain wants at least one chunk, even for "")
        yield ChatGenerationChunk(message=AIMessageChunk(
            content="", response_metadata=generation_metadata(g, self.runtime.backend)))
