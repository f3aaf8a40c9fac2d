"""The LLM runtime interface's contract, on every backend that runs in CI: the tiny random
transformers model, SmolLM2-135M's GGUF through llama.cpp, and the openai backend against a local
llama.cpp server (tests/ilm/test_runtime_openai.py). Plus the llama.cpp-vs-transformers agreement on
mixed text + vector input with the same SmolLM2 weights."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from ilm.runtime import (
    EMBED,
    LOGPROBS,
    VECTORS,
    LLMRuntime,
    RuntimeConfig,
    SamplingOptions,
    Unsupported,
    choose_backend,
    collect,
    drain,
    load_runtime,
)

SYSTEM = "You recommend movies. Answer with one short sentence."
TURNS = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "A funny space movie, please?"}]


@pytest.fixture(scope="module")
def varied_hf():
    """The tiny random LM with larger weights, so its greedy output depends on the prompt."""
    from ilm.runtime.hf import TransformersRuntime
    from tests.tiny_models import varied_tiny_lm
    model, tok = varied_tiny_lm()
    return TransformersRuntime(model, tok, spec="tiny", n_ctx=128)


@pytest.fixture(scope="module")
def smol_llamacpp():
    from ilm.runtime.llamacpp import LlamaCppRuntime
    rt = LlamaCppRuntime.load("smollm2-135m", n_ctx=512)
    yield rt
    rt.close()


@pytest.fixture(params=["transformers", pytest.param("llamacpp", marks=pytest.mark.llamacpp)])
def runtime(request) -> LLMRuntime:
    return request.getfixturevalue({"transformers": "varied_hf", "llamacpp": "smol_llamacpp"}[request.param])


def test_stream_equals_generate_and_greedy_is_repeatable(runtime):
    text, prefix = runtime.render(TURNS)
    assert prefix and text.startswith(prefix)
    opts = SamplingOptions.of(max_new_tokens=16)
    a = runtime.generate(text, opts)
    pieces, b = collect(runtime.stream(text, opts))
    assert "".join(pieces) == a.text == b.text and a.new_tokens == b.new_tokens >= 1
    assert a.prompt_tokens == len(runtime.tokenize(text)) and a.finish in ("eos", "length")
    sampled = [runtime.generate(text, SamplingOptions.of(16, temperature=1.0, seed=s)).text for s in (3, 3)]
    assert sampled[0] == sampled[1]


def test_the_prefix_cache_changes_only_the_speed(runtime):
    text, prefix = runtime.render(TURNS)
    other, _ = runtime.render([TURNS[0], {"role": "user", "content": "Something scary and old."}])
    opts = SamplingOptions.of(max_new_tokens=12)
    plain = [runtime.generate(t, opts).text for t in (text, other)]
    first = runtime.generate(text, opts, prefix=prefix)
    runtime.generate("An unrelated prompt in between.", SamplingOptions.of(max_new_tokens=2))
    second = runtime.generate(other, opts, prefix=prefix)
    assert [first.text, second.text] == plain
    assert second.cached_tokens >= len(runtime.tokenize(prefix))


def test_stop_strings_and_cancel_end_generation(runtime):
    text, _ = runtime.render(TURNS)
    full = runtime.generate(text, SamplingOptions.of(max_new_tokens=24))
    words = full.text.split()
    assert len(words) >= 3, full.text
    stop = " " + words[2]
    cut = runtime.generate(text, SamplingOptions.of(max_new_tokens=24, stop=[stop]))
    assert cut.text == full.text[:full.text.find(stop)] and cut.finish == "stop"
    assert "".join(runtime.stream(text, SamplingOptions.of(max_new_tokens=24, stop=[stop]))) == cut.text
    cancel = threading.Event()
    gen = runtime.stream(text, SamplingOptions.of(max_new_tokens=24), cancel)
    next(gen)
    cancel.set()
    out = drain(gen)
    assert out.finish == "cancel" and out.new_tokens < full.new_tokens
    gen = runtime.stream(text, SamplingOptions.of(max_new_tokens=24))   # the person leaves mid-reply
    next(gen)
    gen.close()
    taken = []

    def other():
        taken.append(runtime.lock.acquire(timeout=2))
        if taken[-1]:
            runtime.lock.release()

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert taken == [True]          # the model is free for the next person at once


def test_two_streams_never_share_the_model_even_on_one_thread(runtime):
    """A server may resume two people's generators on the same worker thread (Gradio does): the
    second must wait until the first ends, and the first may be closed from any thread."""
    from concurrent.futures import ThreadPoolExecutor
    from concurrent.futures import TimeoutError as FutureTimeout
    text, _ = runtime.render(TURNS)
    first = runtime.stream(text, SamplingOptions.of(max_new_tokens=24))
    second = runtime.stream(text, SamplingOptions.of(max_new_tokens=4))
    with ThreadPoolExecutor(max_workers=1) as worker:        # one thread advances both
        worker.submit(next, first).result(60)                 # the first holds the model, suspended
        pending = worker.submit(drain, second)
        if runtime.backend == "llamacpp":     # (transformers runs each call apart, on its own cache copy)
            with pytest.raises(FutureTimeout):
                pending.result(1.0)
        first.close()                                          # from this thread, not the worker's
        assert pending.result(60).new_tokens >= 1


def test_a_prompt_longer_than_the_context_is_cut_from_the_front(runtime):
    long = " ".join(["movie"] * (runtime.n_ctx + 50))
    g = runtime.generate(long, SamplingOptions.of(max_new_tokens=4))
    assert g.truncated_tokens > 0 and g.prompt_tokens + 4 <= runtime.n_ctx
    turns = [TURNS[0]] + [{"role": r, "content": "movie " * 60} for r in ("user", "assistant") * 8] + [TURNS[1]]
    kept, dropped = runtime.fit_turns(turns, 16)
    assert dropped > 0 and kept[0] == TURNS[0] and kept[-1] == TURNS[1]
    assert runtime.count_tokens(runtime.render(kept)[0]) <= runtime.n_ctx - 16
    assert drain(runtime.stream_chat(turns, SamplingOptions.of(max_new_tokens=16))).truncated_turns == dropped


def test_logprobs_match_the_per_position_distributions(runtime):
    assert LOGPROBS in runtime.capabilities
    prefix, conts = "I watched a movie about", [" space", " a dog and a cat", " love"]
    scores = runtime.logprobs(prefix, conts)
    for c, s in zip(conts, scores, strict=True):
        ids_p, ids_c = runtime.tokenize(prefix), runtime.tokenize(c)
        lp = runtime.position_logprobs([prefix, c])     # parts are tokenized apart, as logprobs does
        ref = sum(lp[len(ids_p) - 1 + i, t] for i, t in enumerate(ids_c))
        assert s == pytest.approx(ref, abs=2e-2)
    assert all(s < 0 for s in scores) and len(set(np.round(scores, 4))) == 3
    assert len(runtime.logprobs("", [" space"])) == 1          # an empty prefix reads as EOS


def test_embeddings(runtime):
    assert EMBED in runtime.capabilities
    e = runtime.embed(["a funny space movie", "a sad old war film", "a funny space movie"])
    assert e.shape == (3, runtime.hidden_size) and e.dtype == np.float32
    assert np.allclose(e[0], e[2], atol=1e-5) and not np.allclose(e[0], e[1], atol=1e-3)
    assert runtime.embed([]).shape == (0, runtime.hidden_size)
    text, prefix = runtime.render(TURNS)       # embedding leaves generation as it was
    assert runtime.generate(text, SamplingOptions.of(8), prefix=prefix).text == \
        runtime.generate(text, SamplingOptions.of(8)).text


def token_embeddings(runtime, ids: list[int]) -> np.ndarray:
    """The model's own input embeddings of ``ids``, as (n, d) float32 rows."""
    if runtime.backend == "transformers":
        with torch.no_grad():
            return runtime.model.get_input_embeddings()(torch.tensor(ids)).float().numpy()
    from gguf import GGUFReader
    from gguf.quants import dequantize
    t = next(t for t in GGUFReader(str(runtime.model_path)).tensors if t.name == "token_embd.weight")
    rows = dequantize(t.data, t.tensor_type).reshape(-1, runtime.hidden_size)
    return rows[ids].astype(np.float32)


def test_vectors_in_place_of_tokens_read_as_those_tokens(runtime):
    """A prompt whose middle words are given as the model's own embedding rows must be read as
    the words themselves: the mixed-input path puts vectors at the right positions."""
    assert VECTORS in runtime.capabilities
    head, mid, tail = "Tell me about the movie", " a funny space adventure", " in one sentence:"
    ids = runtime.tokenize(mid)
    assert runtime.tokenize(head + mid + tail) == runtime.tokenize(head) + ids + runtime.tokenize(tail)
    as_text = runtime.position_logprobs(head + mid + tail)
    mixed = runtime.position_logprobs([head, token_embeddings(runtime, ids), tail])
    assert mixed.shape == as_text.shape
    assert (mixed.argmax(-1) == as_text.argmax(-1)).mean() >= 0.9
    assert np.abs(mixed[-1] - as_text[-1]).max() < 0.5
    h_text = runtime.hidden_states(head + mid + tail)
    h_mixed = runtime.hidden_states([head, token_embeddings(runtime, ids), tail])
    cos = (h_text * h_mixed).sum(1) / np.linalg.norm(h_text, axis=1) / np.linalg.norm(h_mixed, axis=1)
    assert h_mixed.shape == h_text.shape == (len(as_text), runtime.hidden_size) and cos.min() > 0.99
    opts = SamplingOptions.of(max_new_tokens=8)
    assert runtime.generate([head, token_embeddings(runtime, ids), tail], opts).text == \
        runtime.generate(head + mid + tail, opts).text
    with pytest.raises(ValueError, match="width"):
        runtime.generate([head, np.zeros((2, runtime.hidden_size + 1), np.float32)], opts)


def kl(p_log: np.ndarray, q_log: np.ndarray) -> np.ndarray:
    return (np.exp(p_log) * (p_log - q_log)).sum(-1)


@pytest.mark.llamacpp
def test_llamacpp_and_transformers_agree_on_spliced_vectors(smol_llamacpp):
    """Same GGUF, same random vectors at the same positions: llama.cpp (Q4_1 as shipped) and the
    transformers backend (the GGUF dequantized to fp32) give nearly the same next-token
    distributions (reports/llm_agreement.md has the numbers on Qwen and SmolLM2)."""
    from ilm.runtime.hf import TransformersRuntime
    hf = TransformersRuntime.load("smollm2-135m", quantize="none", n_ctx=512)
    rng = np.random.default_rng(0)
    scale = float(np.sqrt((token_embeddings(smol_llamacpp, list(range(100, 300))) ** 2).mean()))
    prompts = []
    for i in range(4):
        v = (rng.standard_normal((4, hf.hidden_size)) * scale).astype(np.float32)
        prompts.append([f"User {i} liked", v, " so the next movie to watch is a"])
    top1, kls = [], []
    for p in prompts:
        a, b = smol_llamacpp.position_logprobs(p), hf.position_logprobs(p)
        n = min(a.shape[1], b.shape[1])
        top1.append(a[:, :n].argmax(-1) == b[:, :n].argmax(-1))
        kls.append(kl(b[:, :n], a[:, :n]))
    top1, kls = np.concatenate(top1), np.concatenate(kls)
    assert top1.mean() >= 0.8 and float(np.mean(kls)) < 0.2, (top1.mean(), kls.mean())
    ha, hb = smol_llamacpp.hidden_states(prompts[0]), hf.hidden_states(prompts[0])
    cos = (ha * hb).sum(1) / np.linalg.norm(ha, axis=1) / np.linalg.norm(hb, axis=1)
    assert ha.shape == hb.shape and cos.mean() > 0.95, cos.mean()


def test_unsupported_and_unknown_backends():
    from ilm.runtime.openai_http import OpenAIRuntime
    rt = OpenAIRuntime("http://127.0.0.1:9/v1")
    with pytest.raises(Unsupported):
        rt.embed(["x"])
    with pytest.raises(Unsupported):
        drain(rt.stream(["x", np.zeros((1, 4), np.float32)]))
    with pytest.raises(ValueError, match="must be one of"):
        choose_backend("smollm2-135m", RuntimeConfig(backend="vllm"))
    assert choose_backend("some/hf-dir", RuntimeConfig())[0] == "transformers"
    assert choose_backend("smollm2-135m", RuntimeConfig(base_url="http://x/v1"))[0] == "openai"


def test_auto_falls_back_to_transformers_with_the_fix_named(monkeypatch):
    import ilm.runtime as runtime_mod
    monkeypatch.setattr(runtime_mod, "llamacpp_available", lambda: (False, "ImportError: no llama_cpp"))
    backend, notes = choose_backend("smollm2-135m", RuntimeConfig())
    assert backend == "transformers" and "make llama-cpp" in notes[0] and "no llama_cpp" in notes[0]
    monkeypatch.setattr(runtime_mod, "llamacpp_available", lambda: (True, ""))
    assert choose_backend("smollm2-135m", RuntimeConfig()) == ("llamacpp", [])


@pytest.mark.llamacpp
def test_a_corrupt_or_missing_gguf_is_refused_clearly(tmp_path):
    from ilm.runtime.llamacpp import LlamaCppRuntime
    with pytest.raises(FileNotFoundError, match="no GGUF"):
        LlamaCppRuntime(tmp_path / "missing.gguf")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(Exception):  # noqa: B017 - llama.cpp raises ValueError; any error, not a crash
        LlamaCppRuntime(bad)
    with pytest.raises(Exception, match="GGUF"):  # noqa: B017
        load_runtime(str(tmp_path), RuntimeConfig(backend="llamacpp"))
