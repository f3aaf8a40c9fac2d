"""One interface for every LLM caller (``LLMRuntime``), three backends, and ``load_runtime``.

  llamacpp      the packaged GGUF through llama.cpp: the CPU inference default (fast on AVX2 too)
  transformers  Hugging Face + bitsandbytes NF4 (or bf16 on a GPU): training and GPU inference
  openai        an OpenAI-compatible HTTP endpoint, text only

``load_runtime(spec, RuntimeConfig(backend="auto"))`` picks llamacpp on a CPU when it is installed
and the model is a GGUF, and falls back to transformers with a note (``runtime.notes``) naming the
fix when llama-cpp-python is missing or broken.
"""
from __future__ import annotations

import logging
from dataclasses import replace

from ilm.config import DEFAULT_LLM, LLM_BACKENDS, RuntimeConfig
from ilm.runtime.base import (
    EMBED,
    GENERATE,
    LOGPROBS,
    VECTORS,
    BackendUnavailable,
    Generation,
    LLMRuntime,
    Prompt,
    SamplingOptions,
    Unsupported,
    as_parts,
    collect,
    drain,
)

log = logging.getLogger(__name__)

__all__ = ["EMBED", "GENERATE", "LOGPROBS", "VECTORS", "BackendUnavailable", "Generation",
           "LLMRuntime", "Prompt", "RuntimeConfig", "SamplingOptions", "Unsupported", "as_parts",
           "choose_backend", "collect", "drain", "load_runtime", "llamacpp_available"]


def llamacpp_available() -> tuple[bool, str]:
    """(whether llama-cpp-python imports here, why not)."""
    try:
        import llama_cpp  # noqa: F401
    except Exception as e:       # ImportError, or an OSError from a broken shared library
        return False, f"{type(e).__name__}: {e}"
    return True, ""


def _is_gguf(spec: str) -> bool:
    from ilm.lm import SOURCES
    return spec in SOURCES or spec.endswith(".gguf")


def choose_backend(spec: str, cfg: RuntimeConfig) -> tuple[str, list[str]]:
    """(backend, notes) for ``cfg.backend``; "auto" resolved as described in the module docstring."""
    if cfg.backend not in LLM_BACKENDS:
        raise ValueError(f"--llm-backend must be one of {', '.join(LLM_BACKENDS)}, got {cfg.backend!r}")
    if cfg.backend != "auto":
        return cfg.backend, []
    if cfg.base_url:
        return "openai", []
    import torch
    if torch.cuda.is_available() or not _is_gguf(spec):
        return "transformers", []
    ok, why = llamacpp_available()
    if ok:
        return "llamacpp", []
    from ilm.runtime.llamacpp import INSTALL_HINT
    note = (f"LLM backend: llama.cpp unavailable ({why}); using transformers, which is ~20x slower "
            f"on a CPU without AVX512-BF16. Fix: {INSTALL_HINT}")
    return "transformers", [note]


def load_runtime(spec: str | None = None, cfg: RuntimeConfig | None = None, **overrides) -> LLMRuntime:
    """Load ``spec`` ("qwen2.5-coder-1.5b", "smollm2-135m", a GGUF path, a model directory, or the
    model name on an openai endpoint) behind the backend ``cfg`` chooses.

    Raises:
        BackendUnavailable: an explicitly chosen backend cannot run here (the message names the fix).
        ModelPackageError: the model's packages are missing or fail their checksum.
    """
    spec = spec or DEFAULT_LLM
    cfg = replace(cfg or RuntimeConfig(), **overrides)
    backend, notes = choose_backend(spec, cfg)
    for n in notes:
        log.warning(n)
    if backend == "llamacpp":
        from ilm.runtime.llamacpp import LlamaCppRuntime
        rt = LlamaCppRuntime.load(spec, n_ctx=cfg.n_ctx, n_threads=cfg.n_threads)
    elif backend == "transformers":
        from ilm.runtime.hf import TransformersRuntime
        rt = TransformersRuntime.load(spec, quantize=cfg.quantize, n_ctx=cfg.n_ctx)
    else:
        if not cfg.base_url:
            raise BackendUnavailable("the openai backend needs a server URL (--llm-url http://HOST:PORT/v1)")
        from ilm.runtime.openai_http import OpenAIRuntime
        rt = OpenAIRuntime(cfg.base_url, model=spec, n_ctx=cfg.n_ctx)
    rt.notes = notes
    return rt
