"""Both LLM backends side by side, in one run on one machine: load time, prompt tokens/s, decode
tokens/s, first-token latency and peak resident memory, for each model; and the machine's memory
read bandwidth, which bounds decoding (every new token reads the whole quantized model).

  python -m ilm.eval.backends [--models qwen2.5-coder-1.5b,smollm2-135m]
                              [--backends llamacpp,transformers] [--out reports]

Each (backend, model) runs in a fresh child process (so load time and peak RSS are its own), after
one untimed load that fills the transformers backend's cache (the dequantized and NF4 copies:
minutes for Qwen, once per machine). Writes reports/llm_backends.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np

from ilm.lm import SOURCES
from retrieval.eval.report import Run, md_table, run_line, write_report

PROMPT = ("You are a film critic. Write a long, detailed essay about why people still love old science "
          "fiction movies: the special effects, the music, the actors, the stories, the fear of the "
          "unknown and the hope of the future. Give many examples and explain each one carefully. ")
# What each backend runs: llama.cpp reads the GGUF as shipped; transformers re-quantizes Qwen to
# bitsandbytes NF4 (its product path) and runs the small model unquantized (fp32: faster on a CPU).
GGUF_TYPE = {"qwen2.5-coder-1.5b": "Q4_K_M", "smollm2-135m": "Q4_1"}
HF_QUANTIZE = {"qwen2.5-coder-1.5b": "nf4", "smollm2-135m": "none"}


def read_bandwidth_gb_s(gib: float = 1.0, threads: int = 1, repeats: int = 3) -> float:
    """Best of ``repeats`` reads of a ``gib`` GiB array, split over ``threads`` (numpy's sum
    releases the GIL)."""
    a = np.ones(int(gib * 2**30 / 8), dtype=np.float64)
    parts = np.array_split(a, threads)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        ts = [threading.Thread(target=np.sum, args=(p,)) for p in parts]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        best = min(best, time.perf_counter() - t0)
    return round(a.nbytes / best / 1e9, 2)


def peak_rss_gb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 2**20, 3)
    return float("nan")


def measure(backend: str, model: str, new_tokens: int, prompt_repeat: int) -> dict:
    """One (backend, model), in this process."""
    from ilm.runtime import RuntimeConfig, SamplingOptions, load_runtime
    t0 = time.perf_counter()
    quant = HF_QUANTIZE.get(model, "nf4")
    rt = load_runtime(model, RuntimeConfig(backend=backend, quantize=quant))
    load_s = time.perf_counter() - t0
    text, _ = rt.render([{"role": "user", "content": PROMPT * prompt_repeat}])
    n_prompt = rt.count_tokens(text)
    rt.generate("Hello", SamplingOptions(max_new_tokens=2))        # first-call work (repacking), untimed
    # prompt speed: one new token after the whole prompt, nothing cached
    g1 = rt.generate(text, SamplingOptions(max_new_tokens=1))
    prompt_s = g1.first_token_s if g1.first_token_s is not None else g1.seconds
    # decode speed: a long greedy answer to a prompt whose keys/values are cached
    g = rt.generate(text + " ", SamplingOptions(max_new_tokens=new_tokens), prefix=text)
    decode_tokens = max(g.new_tokens - 1, 1)
    decode_s = g.seconds - (g.first_token_s or 0.0)
    # first-token latency of a chat turn: the system text cached, a short new message
    turns = [{"role": "system", "content": "You recommend movies. Answer in one short sentence."},
             {"role": "user", "content": "Something like Alien but funnier, please."}]
    from ilm.runtime import drain
    drain(rt.stream_chat(turns, SamplingOptions(max_new_tokens=1)))
    ft = drain(rt.stream_chat(turns[:1] + [{"role": "user", "content": "A scary movie from the 80s?"}],
                              SamplingOptions(max_new_tokens=8)))
    return {"backend": backend, "model": model,
            "weights": GGUF_TYPE.get(model, "?") if backend == "llamacpp" else quant.replace("none", "fp32"),
            "load_s": round(load_s, 2),
            "prompt_tokens": n_prompt, "prompt_tok_s": round(n_prompt / max(prompt_s, 1e-9), 1),
            "decode_tokens": decode_tokens, "decode_tok_s": round(decode_tokens / max(decode_s, 1e-9), 2),
            "first_token_s": round(ft.first_token_s or ft.seconds, 3),
            "first_token_cached_prompt_tokens": ft.cached_tokens,
            "peak_rss_gb": peak_rss_gb(), "threads": os.cpu_count()}


def child(backend: str, model: str, new_tokens: int, prompt_repeat: int, timeout: float) -> dict:
    cmd = [sys.executable, "-m", "ilm.eval.backends", "--child", backend, model,
           "--new-tokens", str(new_tokens), "--prompt-repeat", str(prompt_repeat)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"backend": backend, "model": model, "error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        return {"backend": backend, "model": model, "error": (out.stderr or out.stdout)[-600:]}
    return json.loads(lines[-1])


def markdown(report: dict) -> str:
    rows = []
    bw = report["bandwidth_gb_s"]
    for r in report["results"]:
        if "error" in r:
            rows.append([r["backend"], r["model"], "", "error: " + r["error"].splitlines()[-1][:80], "", "", "", "", ""])
            continue
        limit = bw * 1e9 / SOURCES[r["model"]].size if r["model"] in SOURCES else float("nan")
        rows.append([r["backend"], r["model"], r["weights"], f"{r['load_s']:.1f}", f"{r['prompt_tok_s']:.0f}",
                     f"{r['decode_tok_s']:.2f}", f"{r['first_token_s']:.2f}", f"{r['peak_rss_gb']:.2f}",
                     f"{r['decode_tok_s'] / limit:.2f}"])
    ratio = report.get("llamacpp_over_transformers_decode", {})
    lines = [
        "# LLM backends side by side", "", run_line(report["run"]), "",
        f"Memory read bandwidth (numpy sum of 1 GiB): {report['bandwidth_1thread_gb_s']} GB/s on one "
        f"thread, {report['bandwidth_gb_s']} GB/s on {report['bandwidth_threads']}. The decode limit is "
        "that bandwidth over the model file's bytes (each token reads the whole quantized model).", "",
        *md_table(["backend", "model", "weights", "load s", "prompt tok/s", "decode tok/s", "first token s",
                  "peak RSS GB", "decode / limit"], rows), "",
        "Load: from the verified GGUF (llamacpp: its sha256 is checked on every load) or from the cached "
        "NF4 copy (transformers). The transformers cache (dequantized and NF4 copies) is checked or "
        f"filled first, untimed in the table: {report.get('cold_load_s', {})} s in this run (a cold "
        "cache takes minutes for Qwen: dequantize, re-quantize, save). Prompt: a {report['results'][0].get('prompt_tokens', '?')}-token "
        "prompt read with nothing cached. Decode: greedy, the prompt cached. First token: a chat "
        "turn whose system text is cached (what the chat page pays before the first streamed word).", "",
        "llama.cpp decode / transformers decode: " + (", ".join(f"{m}: {v}x" for m, v in ratio.items()) or "n/a"),
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m ilm.eval.backends", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="qwen2.5-coder-1.5b,smollm2-135m")
    ap.add_argument("--backends", default="llamacpp,transformers")
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--prompt-repeat", type=int, default=3, help="copies of the essay prompt (~60 tokens each)")
    ap.add_argument("--timeout", type=float, default=1500, help="seconds per (backend, model)")
    ap.add_argument("--out", default="reports")
    ap.add_argument("--child", nargs=2, metavar=("BACKEND", "MODEL"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(measure(a.child[0], a.child[1], a.new_tokens, a.prompt_repeat)), flush=True)
        return {}
    run = Run.for_module("ilm.eval.backends", argv)
    models, backends = a.models.split(","), a.backends.split(",")
    cold = {}
    if "transformers" in backends:      # fill the dequantized / NF4 caches first (untimed in the table)
        for m in models:
            t0 = time.perf_counter()
            q = HF_QUANTIZE.get(m, "nf4")
            r = subprocess.run([sys.executable, "-c", f"from ilm.lm import load_llm; load_llm({m!r}, quantize={q!r})"],
                               capture_output=True, text=True)
            cold[m] = round(time.perf_counter() - t0, 1) if r.returncode == 0 else f"failed: {r.stderr[-200:]}"
            print(f"[backends] transformers cache for {m}: {cold[m]} s", flush=True)
    results = []
    for m in models:
        for b in backends:
            print(f"[backends] {b} / {m} ...", flush=True)
            results.append(child(b, m, a.new_tokens, a.prompt_repeat, a.timeout))
            print(f"[backends]   {results[-1]}", flush=True)
    threads = os.cpu_count() or 1
    report = {"bandwidth_1thread_gb_s": read_bandwidth_gb_s(threads=1),
              "bandwidth_gb_s": read_bandwidth_gb_s(threads=threads), "bandwidth_threads": threads,
              "cold_load_s": cold, "results": results}
    by = {(r["backend"], r["model"]): r for r in results if "error" not in r}
    report["llamacpp_over_transformers_decode"] = {
        m: round(by[("llamacpp", m)]["decode_tok_s"] / by[("transformers", m)]["decode_tok_s"], 1)
        for m in models if ("llamacpp", m) in by and ("transformers", m) in by}
    report["run"] = run.finish()
    report["hardware"] = report["run"]["hardware"]
    write_report(a.out, "llm_backends", report, markdown, echo=True)
    return report


if __name__ == "__main__":
    main()
