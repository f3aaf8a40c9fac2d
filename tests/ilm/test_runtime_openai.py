"""The openai backend against a real OpenAI-compatible server: llama-cpp-python's own, started here on
127.0.0.1 with SmolLM2-135M (the packaged GGUF)."""
from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from ilm.runtime import GENERATE, RuntimeConfig, SamplingOptions, collect, drain, load_runtime

pytestmark = pytest.mark.llamacpp     # the server is llama-cpp-python's

TURNS = [{"role": "system", "content": "You recommend movies. Answer with one short sentence."},
         {"role": "user", "content": "A funny space movie, please?"}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    from ilm.lm import SMOLLM2, packaged_gguf
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(packaged_gguf(SMOLLM2)), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "512", "--verbose", "False"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(url + "/models", timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"the llama.cpp server exited: {proc.stderr.read()[-2000:]}") from None
            if time.time() > deadline:
                proc.kill()
                raise TimeoutError("the llama.cpp server did not answer within 90 s") from None
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def remote(server):
    rt = load_runtime("smollm2-135m", RuntimeConfig(base_url=server, n_ctx=512))
    assert rt.backend == "openai" and rt.capabilities == frozenset({GENERATE})
    return rt


def test_chat_stream_equals_invoke_and_stops(remote):
    opts = SamplingOptions.of(max_new_tokens=24)
    pieces, whole = collect(remote.stream_chat(TURNS, opts))
    again = drain(remote.stream_chat(TURNS, opts))
    assert "".join(pieces) == whole.text == again.text and whole.text.strip()
    words = whole.text.split()
    assert len(words) >= 3, whole.text
    stop = " " + words[2]
    cut = drain(remote.stream_chat(TURNS, SamplingOptions.of(max_new_tokens=24, stop=[stop])))
    assert cut.text == whole.text[:whole.text.find(stop)]


def test_raw_completion_and_cancel(remote):
    text = "The three best movies about space are"
    a = remote.generate(text, SamplingOptions.of(max_new_tokens=16))
    assert a.text and a.text == remote.generate(text, SamplingOptions.of(max_new_tokens=16)).text
    cancel = threading.Event()
    gen = remote.stream(text, SamplingOptions.of(max_new_tokens=64), cancel)
    next(gen)
    cancel.set()
    assert drain(gen).finish == "cancel"


def test_a_long_conversation_is_cut_to_the_context(remote):
    turns = [TURNS[0]] + [{"role": r, "content": "movie " * 80} for r in ("user", "assistant") * 6] + [TURNS[1]]
    out = drain(remote.stream_chat(turns, SamplingOptions.of(max_new_tokens=8)))
    assert out.truncated_turns > 0 and out.text


def test_the_chat_model_over_the_openai_backend(remote):
    from langchain_core.messages import HumanMessage, SystemMessage

    from dialog.llm import LocalChatModel
    chat = LocalChatModel(runtime=remote, max_new_tokens=16)
    msgs = [SystemMessage(TURNS[0]["content"]), HumanMessage(TURNS[1]["content"])]
    out = chat.invoke(msgs)
    assert out.content and out.response_metadata["backend"] == "openai"
    assert "".join(c.content for c in chat.stream(msgs)) == out.content
