"""Do the llamacpp and transformers backends read the ILM's spliced vectors the same way?

Same GGUF, same vectors at the same positions: llama.cpp runs the GGUF as shipped (Qwen Q4_K_M,
SmolLM2 Q4_1); the transformers backend runs the GGUF dequantized (and, for Qwen, re-quantized to
bitsandbytes NF4, its product path). For every prompt position we compare the next-token
distributions: top-1 agreement and KL(transformers || llamacpp). The vectors come from a
random-init Q-Former over random CF features through an adapter scaled to the LLM's embedding RMS
(the paper's random-Q-Former ablation; no trained checkpoint at these LLM widths is shipped). The
same comparison on text-only prompts separates quantization differences from the vector path.

  python -m ilm.eval.agreement [--models smollm2-135m,qwen2.5-coder-1.5b] [--prompts 8] [--out reports]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ilm.eval.backends import HF_QUANTIZE
from retrieval.eval.report import Run, md_table, run_line, write_report

REQUESTS = ["Describe this movie in two sentences:", "Who would enjoy this movie, and why?",
            "What is the mood of this movie?", "Suggest a movie like this one and say why:"]
ANSWER = (" It is a thrilling science fiction adventure with a lonely hero, a dangerous journey "
          "through space and a surprising ending that many viewers still talk about.")


def spliced_vectors(d_lm: int, target_rms: float, n_items: int, seed: int) -> np.ndarray:
    """(n_items, n_query, d_lm) adapter outputs of a random-init Q-Former over random CF vectors."""
    from ilm.config import QFormerConfig
    from ilm.qformer import ItemQFormer
    from ilm.splice import Adapter
    torch.manual_seed(seed)
    cfg = QFormerConfig()
    qformer, adapter = ItemQFormer(cfg).eval(), Adapter(cfg.hidden, d_lm, target_rms).eval()
    cf = torch.randn(n_items, cfg.d_cf)
    with torch.no_grad():
        return adapter(qformer.encode_items(cf)).float().numpy()


def prompts_for(rt, vectors: np.ndarray, with_vectors: bool) -> list[list]:
    out = []
    for i, v in enumerate(vectors):
        req = REQUESTS[i % len(REQUESTS)]
        head, tail = rt.render([{"role": "user", "content": f"A movie: @@. {req}"}])[0].split("@@")
        out.append([head, v, tail + ANSWER] if with_vectors else [head + "Alien (1979)", tail + ANSWER])
    return out


def compare(a_rt, b_rt, prompts) -> dict:
    top1, kls, n_tok_mismatch = [], [], 0
    for p in prompts:
        a, b = a_rt.position_logprobs(p), b_rt.position_logprobs(p)
        if a.shape[0] != b.shape[0]:
            n_tok_mismatch += 1
            continue
        n = min(a.shape[1], b.shape[1])
        a, b = a[:, :n], b[:, :n]
        top1.append(a.argmax(-1) == b.argmax(-1))
        kls.append((np.exp(b) * (b - a)).sum(-1))
    top1, kls = np.concatenate(top1), np.concatenate(kls)
    return {"positions": int(top1.size), "top1_agreement": round(float(top1.mean()), 4),
            "mean_kl": round(float(kls.mean()), 4), "p95_kl": round(float(np.percentile(kls, 95)), 4),
            "max_kl": round(float(kls.max()), 4), "prompts_with_other_tokenization": n_tok_mismatch}


def markdown(report: dict) -> str:
    rows = []
    for r in report["results"]:
        for kind in ("vectors", "text_only"):
            c = r[kind]
            rows.append([r["model"], r["transformers_weights"], kind.replace("_", " "), c["positions"],
                         f"{c['top1_agreement']:.3f}", f"{c['mean_kl']:.4f}", f"{c['p95_kl']:.4f}", f"{c['max_kl']:.3f}"])
    return "\n".join([
        "# llama.cpp vs transformers on spliced vectors", "", run_line(report["run"]), "",
        "Same GGUF weights and the same vectors at the same positions; next-token distributions at "
        "every prompt position compared. llama.cpp runs the GGUF as shipped; the transformers backend "
        "the dequantized GGUF (fp32) or its NF4 re-quantization. Vectors: a random-init Q-Former "
        f"(seed {report['seed']}) over random CF features, adapter scaled to the LLM's embedding RMS.", "",
        *md_table(["model", "transformers weights", "prompts", "positions", "top-1 agreement",
                  "mean KL", "p95 KL", "max KL"], rows), "",
        "KL is KL(transformers || llamacpp) in nats. The text-only rows are the same prompts with a "
        "title in place of the vectors: the part of the difference that comes from the two "
        "quantizations, not from the vector path.",
    ]) + "\n"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m ilm.eval.agreement", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="smollm2-135m,qwen2.5-coder-1.5b")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="reports")
    a = ap.parse_args(argv)
    from ilm.runtime.hf import TransformersRuntime
    from ilm.runtime.llamacpp import LlamaCppRuntime
    from ilm.splice import embedding_rms
    run = Run.for_module("ilm.eval.agreement", argv)
    results = []
    for m in a.models.split(","):
        t0 = time.perf_counter()
        ll = LlamaCppRuntime.load(m, n_ctx=512)
        hf = TransformersRuntime.load(m, quantize=HF_QUANTIZE.get(m, "nf4"), n_ctx=512)
        rms = embedding_rms(hf.model.get_input_embeddings())
        vecs = spliced_vectors(hf.hidden_size, rms, a.prompts, a.seed)
        res = {"model": m, "transformers_weights": HF_QUANTIZE.get(m, "nf4").replace("none", "fp32"),
               "target_rms": round(float(rms), 4),
               "vectors": compare(hf, ll, prompts_for(ll, vecs, True)),
               "text_only": compare(hf, ll, prompts_for(ll, vecs, False)),
               "wall_s": round(time.perf_counter() - t0, 1)}
        print(f"[agreement] {res}", flush=True)
        results.append(res)
        ll.close()
        del hf
    report = {"seed": a.seed, "n_prompts": a.prompts, "results": results, "run": run.finish()}
    write_report(a.out, "llm_agreement", report, markdown, echo=True)
    return report


if __name__ == "__main__":
    main()
