"""The local LLM as a LangChain chat model (``BaseChatModel``), so it plugs into LangChain pipelines.

``LocalChatModel`` wraps a Hugging Face causal LM and tokenizer (from ``ilm.lm.load_llm``, or the
tiny random LM of the tests). Messages become a prompt through the tokenizer's chat template when
it has one, else a plain "role: text" transcript. ``invoke`` generates greedily unless asked to
sample (``do_sample=True, seed=...``); ``stream`` yields each new token's text as soon as it is
decoded (generation runs on a worker thread). Per-call keyword arguments: ``max_new_tokens``,
``do_sample``, ``temperature``, ``seed``; ``stop`` strings end generation where they first appear
(the stop string itself is not returned).

Prefix cache: on CPU, reading the prompt costs more than the short replies themselves (per-turn
timings in reports/sim_latency_ml-latest-small_intro.md, generation speeds in reports/llm_smoke.md).
The leading system messages of a prompt are the same on every turn, so their keys and values are
computed once per loaded model (``DynamicCache``, kept per distinct system text) and each call
reads only the rest of the prompt. Every call gets its own copy of the cached keys and values, so
concurrent sessions never share a mutable cache.
"""
from __future__ import annotations

import copy
import queue
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, PrivateAttr

_ROLES = {"human": "user", "ai": "assistant", "system": "system"}


def _cut_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """``text`` up to the first stop string, and whether one occurred."""
    cuts = [text.find(s) for s in stop if s and s in text]
    return (text[:min(cuts)], True) if cuts else (text, False)


class _StopWhen:
    """Stopping criterion: a stop string appeared in the new text, or the caller gave up
    (``cancel``, set when a stream is closed early). Checked after every new token, so generation
    ends on the token that completes a stop string."""

    def __init__(self, tokenizer, prompt_len: int, stop: list[str], cancel: threading.Event):
        self.tokenizer, self.prompt_len, self.stop, self.cancel = tokenizer, prompt_len, stop, cancel

    def __call__(self, input_ids, scores, **kwargs):
        import torch
        done = self.cancel.is_set()
        if not done and self.stop:
            text = self.tokenizer.decode(input_ids[0, self.prompt_len:], skip_special_tokens=True)
            done = _cut_at_stop(text, self.stop)[1]
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


class _TokenStreamer:
    """A ``generate`` streamer that queues the text of every new token as soon as it decodes
    (transformers' ``TextIteratorStreamer`` holds text back until a word is complete). Text is cut
    at the first stop string; a token that ends inside a multi-byte character waits for the next."""

    def __init__(self, tokenizer, stop: list[str]):
        self.tokenizer, self.stop = tokenizer, stop
        self.queue: queue.Queue = queue.Queue()
        self._ids: list[int] = []
        self._sent = 0
        self._prompt_seen = False
        self._stopped = False

    def put(self, value) -> None:
        if not self._prompt_seen:           # the first call hands over the prompt
            self._prompt_seen = True
            return
        if self._stopped:
            return
        self._ids.extend(int(t) for t in value.reshape(-1).tolist())
        text = self.tokenizer.decode(self._ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return
        text, self._stopped = _cut_at_stop(text, self.stop)
        if len(text) > self._sent:
            self.queue.put(text[self._sent:])
            self._sent = len(text)

    def end(self) -> None:
        self.queue.put(None)


class LocalChatModel(BaseChatModel):
    """A local transformers causal LM behind LangChain's chat-model interface."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: Any
    tokenizer: Any
    spec: str = "local"
    max_new_tokens: int = 128
    temperature: float = 0.7
    max_prompt_tokens: int = 1024
    prefix_cache: bool = True           # reuse the keys/values of the leading system messages
    prefix_cache_size: int = 8          # distinct system prompts kept

    _prefixes: OrderedDict = PrivateAttr(default_factory=OrderedDict)
    _prefix_lock: Any = PrivateAttr(default_factory=threading.Lock)

    @classmethod
    def load(cls, spec: str, quantize: str = "nf4", **kw) -> LocalChatModel:
        """Load weights with ``ilm.lm.load_llm`` (packaged or local models only; nothing downloads)."""
        from ilm.lm import load_llm
        model, tokenizer = load_llm(spec, quantize=quantize)
        return cls(model=model, tokenizer=tokenizer, spec=spec, **kw)

    @property
    def _llm_type(self) -> str:
        return "local-transformers"

    @property
    def _identifying_params(self) -> dict:
        return {"spec": self.spec, "max_new_tokens": self.max_new_tokens}

    # ---- prompts ----
    def _render(self, messages: list[BaseMessage]) -> tuple[str, str]:
        """(prompt text, the text of its leading system messages: a prefix of the prompt, or "")."""
        turns = [{"role": _ROLES.get(m.type, "user"), "content": str(m.content)} for m in messages]
        n_system = 0
        while n_system < len(turns) - 1 and turns[n_system]["role"] == "system":
            n_system += 1
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
            prefix = (self.tokenizer.apply_chat_template(turns[:n_system], tokenize=False,
                                                         add_generation_prompt=False) if n_system else "")
        else:
            lines = [f"{t['role']}: {t['content']}" for t in turns]
            text = "\n".join(lines) + "\nassistant:"
            prefix = "\n".join(lines[:n_system]) + "\n" if n_system else ""
        return text, (prefix if prefix and text.startswith(prefix) else "")

    def _tokenize(self, text: str):
        tok = self.tokenizer
        return tok(text, return_tensors="pt", add_special_tokens=not getattr(tok, "chat_template", None))["input_ids"]

    def _prompt_ids(self, messages: list[BaseMessage]):
        """Prompt ids (1, T), attention mask, and a private copy of the cached keys/values of the
        prompt's system prefix (None when the cache is off or does not apply)."""
        import torch
        text, prefix = self._render(messages)
        ids = self._tokenize(text)
        past = None
        if self.prefix_cache and prefix and ids.shape[1] <= self.max_prompt_tokens:
            past = self._cached_prefix(prefix, ids)
        ids = ids[:, -self.max_prompt_tokens:]
        device = next(self.model.parameters()).device
        return ids.to(device), torch.ones_like(ids).to(device), past

    def _cached_prefix(self, prefix: str, ids):
        """A copy of the keys/values of ``prefix``, computed on first use; None when the prefix's
        tokens are not the first tokens of ``ids`` (a tokenizer that merges across the boundary)
        or nothing would be left to read."""
        import torch
        from transformers import DynamicCache
        with self._prefix_lock:
            hit = self._prefixes.get(prefix)
            if hit is None:
                prefix_ids = self._tokenize(prefix)
                device = next(self.model.parameters()).device
                with torch.no_grad():
                    out = self.model(input_ids=prefix_ids.to(device), use_cache=True,
                                     past_key_values=DynamicCache(config=self.model.config))
                hit = (prefix_ids[0].tolist(), out.past_key_values)
                self._prefixes[prefix] = hit
                while len(self._prefixes) > self.prefix_cache_size:
                    self._prefixes.popitem(last=False)
            else:
                self._prefixes.move_to_end(prefix)
            prefix_ids, kv = hit
            n = len(prefix_ids)
            if ids.shape[1] <= n or ids[0, :n].tolist() != prefix_ids:
                return None
            return copy.deepcopy(kv)

    def warm_up(self, messages: list[BaseMessage]) -> None:
        """Compute the prefix cache for these messages' system text and run one generation step
        (bitsandbytes repacks its 4-bit weights for the CPU kernel on the first call)."""
        self.invoke(messages, max_new_tokens=1)

    # ---- generation ----
    def _gen_kwargs(self, kwargs: dict) -> dict:
        import torch
        do_sample = bool(kwargs.get("do_sample", False))
        if do_sample and kwargs.get("seed") is not None:
            torch.manual_seed(int(kwargs["seed"]))
        out = {"max_new_tokens": int(kwargs.get("max_new_tokens", self.max_new_tokens)), "do_sample": do_sample,
               "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id}
        if do_sample:
            out["temperature"] = float(kwargs.get("temperature", self.temperature))
        else:
            out.update(temperature=None, top_p=None, top_k=None)
        return out

    def _generate_args(self, messages, stop, kwargs, cancel: threading.Event) -> dict:
        from transformers import StoppingCriteriaList
        ids, mask, past = self._prompt_ids(messages)
        args = {"input_ids": ids, "attention_mask": mask, **self._gen_kwargs(kwargs),
                "stopping_criteria": StoppingCriteriaList([_StopWhen(self.tokenizer, ids.shape[1], stop or [], cancel)])}
        if past is not None:
            args["past_key_values"] = past
        return args

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        import torch
        args = self._generate_args(messages, stop, kwargs, threading.Event())
        n_prompt = int(args["input_ids"].shape[1])
        n_cached = int(args["past_key_values"].get_seq_length()) if "past_key_values" in args else 0
        with torch.no_grad():
            out = self.model.generate(**args)
        text = self.tokenizer.decode(out[0, n_prompt:], skip_special_tokens=True)
        text = _cut_at_stop(text, stop or [])[0]
        n_new = int(out.shape[1] - n_prompt)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(
            text, response_metadata={"prompt_tokens": n_prompt, "cached_prompt_tokens": n_cached,
                                     "new_tokens": n_new}))])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        """Token-by-token text. Closing the stream early (``break`` in the caller) stops
        generation after the current token instead of letting it run to ``max_new_tokens``."""
        import torch
        cancel = threading.Event()
        args = self._generate_args(messages, stop, kwargs, cancel)
        streamer = _TokenStreamer(self.tokenizer, stop or [])
        errors: list[BaseException] = []

        def work():
            try:
                with torch.no_grad():
                    self.model.generate(streamer=streamer, **args)
            except BaseException as e:       # re-raised in the caller's thread below
                errors.append(e)
                streamer.end()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        finished = False
        try:
            any_piece = False
            while True:
                piece = streamer.queue.get(timeout=600)
                if piece is None:
                    break
                if piece:
                    any_piece = True
                    chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
                    if run_manager:
                        run_manager.on_llm_new_token(piece, chunk=chunk)
                    yield chunk
            thread.join()
            finished = True
            if errors:
                raise errors[0]
            if not any_piece:           # LangChain wants at least one chunk, even for an empty reply
                yield ChatGenerationChunk(message=AIMessageChunk(content=""))
        finally:
            if not finished:            # closed early: the worker stops after its current token
                cancel.set()
