"""Run metadata and the one report writer every benchmark and evaluation uses.

``Run`` records when and how a measurement started (command, date, load average) and, at the end,
the hardware it ran on (CPU model and flags such as avx2 / avx512*, cores, threads, torch, GPU) and
the wall time. ``write_report`` writes ``<stem>.json`` (the data plus ``run``), ``<stem>.md`` and,
when given a plotting function, ``<stem>.png``. ``hardware_line`` renders the hardware in one line
for Markdown headers.
"""
from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# CPU features that change which kernels torch, faiss, llama.cpp and bitsandbytes run.
CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
             "avx512_bf16", "amx_bf16", "amx_int8", "neon", "asimd")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (platform's guess elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The subset of ``CPU_FLAGS`` this CPU has (from /proc/cpuinfo; empty where it is unreadable)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    have = set(line.split(":", 1)[1].split())
                    return [flag for flag in CPU_FLAGS if flag in have]
    except OSError:
        pass
    return []


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def hardware() -> dict:
    """CPU model and flags, cores, threads, library versions and GPU of this process."""
    import torch
    info = {"cpu": cpu_model(), "cpu_flags": cpu_flags(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "aten_cpu_capability": os.environ.get("ATEN_CPU_CAPABILITY") or "auto",
            "python": platform.python_version(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    return info


def hardware_line(hw) -> str:
    """One line for a Markdown header (also reads the plain strings of older reports)."""
    if isinstance(hw, str):
        return hw
    if "cpu_flags" not in hw:   # an older report's dict
        return ", ".join(f"{k} {v}" for k, v in hw.items() if v is not None)
    flags = ",".join(hw.get("cpu_flags") or []) or "flags unknown"
    gpu = hw.get("gpu") or "no GPU"
    line = (f"{hw.get('cpu')} ({flags}); {hw.get('cpu_count')} cores; torch {hw.get('torch')} "
            f"({hw.get('torch_threads')} threads); {gpu}")
    if hw.get("aten_cpu_capability", "auto") != "auto":
        line += f"; ATEN_CPU_CAPABILITY={hw['aten_cpu_capability']}"
    return line


@dataclass
class Run:
    """Metadata of one measuring run; create it first thing, call ``finish()`` when done."""

    command: str = field(default_factory=lambda: " ".join(shlex.quote(a) for a in
                                                          [Path(sys.argv[0]).name, *sys.argv[1:]]))
    date: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M:%S"))
    load_average_at_start: list = field(default_factory=load_average)
    _t0: float = field(default_factory=time.perf_counter, repr=False)

    @classmethod
    def for_module(cls, module: str, argv=None) -> Run:
        """A run whose command reads ``python -m <module> <argv>`` (argv: sys.argv[1:] if None)."""
        args = sys.argv[1:] if argv is None else list(argv)
        return cls(command=" ".join(["python", "-m", module, *map(shlex.quote, map(str, args))]))

    def elapsed(self) -> float:
        return time.perf_counter() - self._t0

    def finish(self, **extra) -> dict:
        """The metadata dict: command, date, load averages, hardware, wall time (+ ``extra``)."""
        return {"command": self.command, "date": self.date,
                "load_average_at_start": self.load_average_at_start,
                "load_average_at_end": load_average(), "hardware": hardware(),
                "wall_s": round(self.elapsed(), 1), **extra}


def run_line(meta: dict) -> str:
    """One Markdown line naming the command, date, hardware, load and wall time of a run."""
    load = ", ".join(f"{x:.1f}" for x in meta.get("load_average_at_start", []))
    return (f"Run: `{meta.get('command')}` on {meta.get('date')}; {hardware_line(meta.get('hardware', {}))}; "
            f"load average at start {load}; wall time {meta.get('wall_s')} s.")


def write_report(out_dir, stem: str, data: dict, markdown: str | Callable[[dict], str],
                 plot: Callable[[dict, Path], None] | None = None, echo: bool = False) -> dict[str, Path]:
    """Write ``<out_dir>/<stem>.json`` (``data``), ``.md`` and, with ``plot``, ``.png``.

    Args:
        data: the report; by convention it holds the ``Run.finish()`` dict under "run".
        markdown: the Markdown text, or a function of ``data`` that returns it.
        plot: ``plot(data, path)`` draws the PNG (matplotlib with the Agg backend).
        echo: also print the Markdown (commands show their report when they end).
    Returns:
        {"json": path, "md": path[, "png": path]}.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / f"{stem}.json", "md": out / f"{stem}.md"}
    paths["json"].write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")
    text = markdown(data) if callable(markdown) else markdown
    paths["md"].write_text(text if text.endswith("\n") else text + "\n")
    if echo:
        print(text)
    if plot is not None:
        import matplotlib
        matplotlib.use("Agg")
        paths["png"] = out / f"{stem}.png"
        plot(data, paths["png"])
    return paths


def _jsonable(obj):
    """numpy scalars and arrays as lists; anything else JSON cannot hold as its text."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)     # Paths, dtypes and other config values: their text


def md_table(header: list[str], rows: list[list]) -> list[str]:
    """Markdown table lines: a header row, the separator, one line per row (cells as str)."""
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])
