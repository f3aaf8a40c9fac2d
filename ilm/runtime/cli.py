"""The LLM options every command shares: ``--llm-backend``, ``--llm-url``, ``--quantize``
(``--llm`` itself stays with each command: its default differs)."""
from __future__ import annotations

import argparse

from ilm.config import DEFAULT_QUANTIZE, LLM_BACKENDS, RuntimeConfig


def add_runtime_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("LLM runtime")
    g.add_argument("--llm-backend", default="auto", choices=LLM_BACKENDS,
                   help="auto (default): llamacpp on a CPU when llama-cpp-python is installed and the "
                        "model is a GGUF, else transformers; openai when --llm-url is given")
    g.add_argument("--llm-url", default=None, metavar="URL",
                   help="an OpenAI-compatible endpoint for the openai backend, e.g. http://127.0.0.1:8000/v1")
    g.add_argument("--quantize", default=DEFAULT_QUANTIZE, choices=("nf4", "none"),
                   help="transformers backend: bitsandbytes NF4 (default) or unquantized")
    g.add_argument("--llm-ctx", type=int, default=RuntimeConfig.n_ctx, metavar="TOKENS",
                   help=f"context length (prompt + reply, default {RuntimeConfig.n_ctx})")


def runtime_config(args: argparse.Namespace) -> RuntimeConfig:
    return RuntimeConfig(backend=args.llm_backend, quantize=args.quantize, n_ctx=args.llm_ctx,
                         base_url=args.llm_url)
