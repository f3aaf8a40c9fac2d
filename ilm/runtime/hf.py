"""The transformers backend: a Hugging Face causal LM (``ilm.lm.load_llm``: bitsandbytes NF4 or
bf16/fp32) behind ``LLMRuntime``. It is the training path (gradients reach the Q-Former and the
adapter through the same model) and the GPU path; on an AVX2 CPU it decodes ~20x slower than
llama.cpp (reports/llm_backends.md).

Prefix cache: the leading system text of a prompt is the same on every turn, so its keys and values
are computed once per distinct text (``DynamicCache``, an LRU of ``prefix_cache_size``) and each call
reads only the rest. Every call works on its own copy, so concurrent calls never share a mutable
cache. Vectors in a prompt go in as ``inputs_embeds`` rows (no prefix cache for such prompts).
"""
from __future__ import annotations

import copy
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence

import numpy as np

from ilm.runtime.base import (
    EMBED,
    GENERATE,
    LOGPROBS,
    VECTORS,
    Generation,
    LLMRuntime,
    Prompt,
    SamplingOptions,
    as_parts,
    cut_at_stop,
    held_back,
)


class _StopWhen:
    """Stopping criterion: a stop string appeared in the new text, or the caller gave up."""

    def __init__(self, tokenizer, prompt_len: int, stop: list[str], cancel: threading.Event):
        self.tokenizer, self.prompt_len, self.stop, self.cancel = tokenizer, prompt_len, stop, cancel

    def __call__(self, input_ids, scores, **kwargs):
        import torch
        done = self.cancel.is_set()
        if not done and self.stop:
            text = self.tokenizer.decode(input_ids[0, self.prompt_len:], skip_special_tokens=True)
            done = cut_at_stop(text, self.stop)[1]
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


class _TokenStreamer:
    """A ``generate`` streamer that queues the text of every new token as soon as it decodes,
    cut at the first stop string; a token that ends inside a multi-byte character waits."""

    def __init__(self, tokenizer, stop: list[str]):
        self.tokenizer, self.stop = tokenizer, stop
        self.queue: queue.Queue = queue.Queue()
        self.ids: list[int] = []
        self._sent = 0
        self._text = ""
        self._prompt_seen = False
        self.stopped = False

    def put(self, value) -> None:
        if not self._prompt_seen:           # the first call hands over the prompt
            self._prompt_seen = True
            return
        if self.stopped:
            return
        self.ids.extend(int(t) for t in value.reshape(-1).tolist())
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return
        text, self.stopped = cut_at_stop(text, self.stop)
        self._text = text
        upto = len(text) if self.stopped else len(text) - held_back(text, self.stop)
        if upto > self._sent:
            self.queue.put(text[self._sent:upto])
            self._sent = upto

    def end(self) -> None:
        if len(self._text) > self._sent:     # text held back for a stop string that never came
            self.queue.put(self._text[self._sent:])
            self._sent = len(self._text)
        self.queue.put(None)


class TransformersRuntime(LLMRuntime):
    """Args:
        model, tokenizer: a frozen causal LM and its tokenizer (``ilm.lm.load_llm`` or a tiny one).
        spec: the model's name for reports.
        n_ctx: the most prompt + new tokens a call may use (older prompt tokens are dropped).
        prefix_cache: cache the keys/values of recurring system text.
    """

    backend = "transformers"
    capabilities = frozenset({GENERATE, LOGPROBS, EMBED, VECTORS})

    def __init__(self, model, tokenizer, spec: str = "local", n_ctx: int = 2048,
                 prefix_cache: bool = True, prefix_cache_size: int = 8):
        super().__init__()
        self.model, self.tokenizer, self.spec, self.n_ctx = model, tokenizer, spec, n_ctx
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.prefix_cache, self.prefix_cache_size = prefix_cache, prefix_cache_size
        self.prefixes: OrderedDict = OrderedDict()
        self._prefix_lock = threading.Lock()
        self.hidden_size = int(model.get_input_embeddings().weight.shape[1])

    @classmethod
    def load(cls, spec: str, quantize: str = "nf4", **kw) -> TransformersRuntime:
        """Weights through ``ilm.lm.load_llm`` (packaged or local models; nothing downloads)."""
        from ilm.lm import load_llm
        model, tokenizer = load_llm(spec, quantize=quantize)
        return cls(model, tokenizer, spec=spec, **kw)

    @property
    def device(self):
        return next(self.model.parameters()).device

    # ---- prompts ----
    def _template(self, turns: list[dict], n_system: int) -> tuple[str, str] | None:
        tok = self.tokenizer
        if not getattr(tok, "chat_template", None):
            return None
        text = tok.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        prefix = (tok.apply_chat_template(turns[:n_system], tokenize=False, add_generation_prompt=False)
                  if n_system else "")
        return text, prefix

    def tokenize(self, text: str) -> list[int]:
        tok = self.tokenizer
        return tok(text, add_special_tokens=not getattr(tok, "chat_template", None))["input_ids"]

    def _ids(self, text: str):
        import torch
        return torch.tensor([self.tokenize(text)], dtype=torch.long)

    def _embeds(self, parts) -> tuple:
        """(inputs_embeds (1, T, d), number of positions) of a mixed prompt."""
        import torch
        emb = self.model.get_input_embeddings()
        rows = []
        for p in parts:
            if isinstance(p, str):
                rows.append(emb(self._ids(p).to(self.device))[0])
            else:
                if p.shape[1] != self.hidden_size:
                    raise ValueError(f"vectors must have width {self.hidden_size}, got {p.shape[1]}")
                rows.append(torch.from_numpy(p).to(self.device, emb.weight.dtype))
        if not rows:                        # an empty prompt reads as one EOS token
            rows.append(emb(torch.tensor([self.tokenizer.eos_token_id], device=self.device)))
        x = torch.cat(rows)[None]
        return x, int(x.shape[1])

    def _cached_prefix(self, prefix: str, ids):
        """A private copy of the keys/values of ``prefix`` (computed on first use), or None when the
        prefix's tokens do not start ``ids`` or nothing would be left to read."""
        import torch
        from transformers import DynamicCache
        with self._prefix_lock:
            hit = self.prefixes.get(prefix)
            if hit is None:
                prefix_ids = self._ids(prefix)
                with torch.no_grad():
                    out = self.model(input_ids=prefix_ids.to(self.device), use_cache=True,
                                     past_key_values=DynamicCache(config=self.model.config))
                hit = (prefix_ids[0].tolist(), out.past_key_values)
                self.prefixes[prefix] = hit
                while len(self.prefixes) > self.prefix_cache_size:
                    self.prefixes.popitem(last=False)
            else:
                self.prefixes.move_to_end(prefix)
            prefix_ids, kv = hit
            n = len(prefix_ids)
            if ids.shape[1] <= n or ids[0, :n].tolist() != prefix_ids:
                return None
            return copy.deepcopy(kv)

    def _generate_args(self, prompt: Prompt, opts: SamplingOptions, cancel: threading.Event,
                       prefix: str) -> tuple[dict, int, int, int]:
        """(generate kwargs, prompt tokens, cached tokens, truncated tokens)."""
        import torch
        from transformers import StoppingCriteriaList
        parts = as_parts(prompt)
        budget = max(1, self.n_ctx - opts.max_new_tokens)
        gen = {"max_new_tokens": opts.max_new_tokens, "do_sample": opts.temperature > 0,
               "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id}
        if opts.temperature > 0:
            gen["temperature"] = opts.temperature
            if opts.seed is not None:
                torch.manual_seed(int(opts.seed))
        else:
            gen.update(temperature=None, top_p=None, top_k=None)
        if all(isinstance(p, str) for p in parts):
            ids = self._ids("".join(parts))
            truncated = max(0, ids.shape[1] - budget)
            past = self._cached_prefix(prefix, ids) if self.prefix_cache and prefix and not truncated else None
            ids = ids[:, truncated:].to(self.device)
            args = {"input_ids": ids, "attention_mask": torch.ones_like(ids), **gen}
            if past is not None:
                args["past_key_values"] = past
            n_prompt, n_cached, prompt_len = int(ids.shape[1]), (int(past.get_seq_length()) if past else 0), ids.shape[1]
        else:
            x, n = self._embeds(parts)
            truncated = max(0, n - budget)
            x = x[:, truncated:]
            args = {"inputs_embeds": x, "attention_mask": torch.ones(x.shape[:2], dtype=torch.long,
                                                                     device=x.device), **gen}
            n_prompt, n_cached, prompt_len = int(x.shape[1]), 0, 0
        args["stopping_criteria"] = StoppingCriteriaList([_StopWhen(self.tokenizer, prompt_len, opts.stop, cancel)])
        return args, n_prompt, n_cached, truncated

    # ---- generation ----
    def stream(self, prompt: Prompt, options: SamplingOptions | None = None,
               cancel: threading.Event | None = None, prefix: str = "") -> Iterator[str]:
        import torch
        opts = options or SamplingOptions()
        cancel = cancel or threading.Event()
        t0 = time.perf_counter()
        args, n_prompt, n_cached, truncated = self._generate_args(prompt, opts, cancel, prefix)
        streamer = _TokenStreamer(self.tokenizer, opts.stop)
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
        text, first, finished = "", None, False
        try:
            while True:
                piece = streamer.queue.get(timeout=600)
                if piece is None:
                    break
                if piece:
                    first = first if first is not None else time.perf_counter() - t0
                    text += piece
                    yield piece
            thread.join()
            finished = True
            if errors:
                raise errors[0]
        finally:
            if not finished:            # closed early: the worker stops after its current token
                cancel.set()
        eos = self.tokenizer.eos_token_id
        finish = ("cancel" if cancel.is_set() else "stop" if streamer.stopped
                  else "eos" if streamer.ids and streamer.ids[-1] == eos else "length")
        return Generation(text=text, prompt_tokens=n_prompt, cached_tokens=n_cached,
                          new_tokens=len(streamer.ids), finish=finish, first_token_s=first,
                          seconds=time.perf_counter() - t0, truncated_tokens=truncated)

    # ---- scoring and embeddings ----
    def _logits(self, prompt: Prompt):
        import torch
        x, _ = self._embeds(as_parts(prompt))
        with torch.no_grad():
            return self.model(inputs_embeds=x).logits[0].float().cpu().numpy()

    def position_logprobs(self, prompt: Prompt) -> np.ndarray:
        from ilm.runtime.base import log_softmax
        return log_softmax(self._logits(prompt))

    def logprobs(self, prefix: Prompt, continuations: Sequence[str]) -> list[float]:
        import torch
        from transformers import DynamicCache

        from ilm.runtime.base import log_softmax
        x, n = self._embeds(as_parts(prefix))
        with torch.no_grad():
            out = self.model(inputs_embeds=x, use_cache=True,
                             past_key_values=DynamicCache(config=self.model.config))
            last = out.logits[0, -1].float().cpu().numpy()
            scores = []
            for cont in continuations:
                ids = self.tokenize(cont)
                if not ids:
                    scores.append(0.0)
                    continue
                rows = [last]
                if len(ids) > 1:
                    o = self.model(input_ids=torch.tensor([ids[:-1]], device=self.device),
                                   past_key_values=copy.deepcopy(out.past_key_values), use_cache=True)
                    rows += list(o.logits[0].float().cpu().numpy())
                lp = log_softmax(np.stack(rows))
                scores.append(float(sum(lp[i, t] for i, t in enumerate(ids))))
        return scores

    def hidden_states(self, prompt: Prompt) -> np.ndarray:
        import torch
        x, _ = self._embeds(as_parts(prompt))
        with torch.no_grad():
            h = self.model(inputs_embeds=x[:, -self.n_ctx:], output_hidden_states=True).hidden_states[-1][0]
        return h.float().cpu().numpy()

    def warm_up(self, prompt: Prompt = "Hi", prefix: str = "") -> None:
        """Also repacks bitsandbytes' 4-bit weights for its CPU kernel on the first call."""
        super().warm_up(prompt, prefix)
