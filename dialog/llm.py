"""The local LLM as a LangChain chat model (``BaseChatModel``), so it plugs into LangChain pipelines.

``LocalChatModel`` wraps a Hugging Face causal LM and tokenizer (from ``ilm.lm.load_llm``, or the
tiny random LM of the tests). Messages become a prompt through the tokenizer's chat template when
it has one, else a plain "role: text" transcript. ``invoke`` generates greedily unless asked to
sample (``do_sample=True, seed=...``); ``stream`` yields text pieces as they are generated
(``TextIteratorStreamer`` on a worker thread). Per-call keyword arguments: ``max_new_tokens``,
``do_sample``, ``temperature``, ``seed``.
"""
from __future__ import annotations

import threading
from typing import Any, Iterator, Optional

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict

_ROLES = {"human": "user", "ai": "assistant", "system": "system"}


class LocalChatModel(BaseChatModel):
    """A local transformers causal LM behind LangChain's chat-model interface."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: Any
    tokenizer: Any
    spec: str = "local"
    max_new_tokens: int = 128
    temperature: float = 0.7
    max_prompt_tokens: int = 1024

    @classmethod
    def load(cls, spec: str, quantize: str = "nf4", **kw) -> "LocalChatModel":
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

    def _prompt_ids(self, messages: list[BaseMessage]):
        import torch
        turns = [{"role": _ROLES.get(m.type, "user"), "content": str(m.content)} for m in messages]
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        else:
            text = "\n".join(f"{t['role']}: {t['content']}" for t in turns) + "\nassistant:"
        ids = tok(text, return_tensors="pt", add_special_tokens=not getattr(tok, "chat_template", None))["input_ids"]
        ids = ids[:, -self.max_prompt_tokens:]
        device = next(self.model.parameters()).device
        return ids.to(device), torch.ones_like(ids).to(device)

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

    def _generate(self, messages: list[BaseMessage], stop: Optional[list[str]] = None,
                  run_manager: Optional[CallbackManagerForLLMRun] = None, **kwargs: Any) -> ChatResult:
        import torch
        ids, mask = self._prompt_ids(messages)
        with torch.no_grad():
            out = self.model.generate(input_ids=ids, attention_mask=mask, **self._gen_kwargs(kwargs))
        text = self.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        for s in stop or []:
            text = text.split(s)[0]
        n_new = int(out.shape[1] - ids.shape[1])
        return ChatResult(generations=[ChatGeneration(message=AIMessage(
            text, response_metadata={"prompt_tokens": int(ids.shape[1]), "new_tokens": n_new}))])

    def _stream(self, messages: list[BaseMessage], stop: Optional[list[str]] = None,
                run_manager: Optional[CallbackManagerForLLMRun] = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        import torch
        from transformers import TextIteratorStreamer
        ids, mask = self._prompt_ids(messages)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
        errors: list[BaseException] = []

        def work():
            try:
                with torch.no_grad():
                    self.model.generate(input_ids=ids, attention_mask=mask, streamer=streamer,
                                        **self._gen_kwargs(kwargs))
            except BaseException as e:       # re-raised in the caller's thread below
                errors.append(e)
                streamer.end()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        any_piece = False
        for piece in streamer:
            if piece:
                any_piece = True
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
                if run_manager:
                    run_manager.on_llm_new_token(piece, chunk=chunk)
                yield chunk
        thread.join()
        if errors:
            raise errors[0]
        if not any_piece:           # LangChain wants at least one chunk, even for an empty reply
            yield ChatGenerationChunk(message=AIMessageChunk(content=""))
