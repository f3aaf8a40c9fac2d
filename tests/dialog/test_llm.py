"""The LLM path with a tiny random LM: garbage output must fall back cleanly; the prefix cache, stop
strings and early closing of a stream change nothing but speed."""
import time

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from dialog.eval.systems import LLMOnlySystem
from dialog.manager import build_manager
from dialog.ranker import RankerWeights
from dialog.reply import ReplyChecker, ReplyItem
from dialog.understand import TitleFinder


def test_local_chat_model_invoke_and_stream(tiny_chat):
    assert isinstance(tiny_chat, BaseChatModel)
    out = tiny_chat.invoke([HumanMessage("recommend a funny movie")], max_new_tokens=6)
    assert isinstance(out, AIMessage) and isinstance(out.content, str)
    streamed = "".join(c.content for c in tiny_chat.stream([HumanMessage("recommend a funny movie")], max_new_tokens=6))
    assert streamed.strip() == out.content.strip()


@pytest.fixture(scope="module")
def varied_lm():
    from tests.tiny_models import varied_tiny_lm
    return varied_tiny_lm()


SYSTEM = "you recommend movies . write one funny sentence about the movie"
REQUESTS = ["a scary alien movie please", "something funny", "i love old war films"]


def test_prefix_cache_gives_the_same_output_as_no_cache(varied_lm):
    from dialog.llm import LocalChatModel
    model, tok = varied_lm
    plain = LocalChatModel.from_hf(model, tok, max_new_tokens=12, prefix_cache=False)
    cached = LocalChatModel.from_hf(model, tok, max_new_tokens=12)
    outs = []
    for text in REQUESTS:
        msgs = [SystemMessage(SYSTEM), HumanMessage(text)]
        a, b = plain.invoke(msgs), cached.invoke(msgs)
        assert a.response_metadata["cached_prompt_tokens"] == 0
        assert b.response_metadata["cached_prompt_tokens"] == len(tok("system: " + SYSTEM + "\n")["input_ids"])
        assert b.content == a.content and b.response_metadata["new_tokens"] == a.response_metadata["new_tokens"]
        assert "".join(c.content for c in cached.stream(msgs)) == a.content
        assert cached.invoke(msgs, do_sample=True, seed=2).content == plain.invoke(msgs, do_sample=True, seed=2).content
        outs.append(a.content)
    assert len(set(outs)) == len(REQUESTS)      # the output depends on the prompt: equality above means something
    (prefix_ids, kv), = cached.runtime.prefixes.values()  # one system text, computed once ...
    assert kv.get_seq_length() == len(prefix_ids)  # ... and never extended: every call worked on a copy
    no_system = cached.invoke([HumanMessage(REQUESTS[0])])
    assert no_system.response_metadata["cached_prompt_tokens"] == 0 and no_system.content == \
        plain.invoke([HumanMessage(REQUESTS[0])]).content


def test_stop_strings_and_closing_a_stream_end_generation(varied_lm):
    from dialog.llm import LocalChatModel
    model, tok = varied_lm
    chat = LocalChatModel.from_hf(model, tok, max_new_tokens=30)
    msgs = [SystemMessage(SYSTEM), HumanMessage("something funny")]
    full = chat.invoke(msgs)
    word = full.content.split()[3]
    cut = chat.invoke(msgs, stop=[word])
    assert cut.content == full.content[:full.content.find(word)]
    assert cut.response_metadata["new_tokens"] <= 4 < full.response_metadata["new_tokens"]
    assert "".join(c.content for c in chat.stream(msgs, stop=[word])) == cut.content

    calls = []

    def slow(module, args, out):
        calls.append(1)
        time.sleep(0.02)

    hook = model.register_forward_hook(slow)
    try:
        list(chat.stream(msgs))
        n_full = len(calls)
        calls.clear()
        stream = chat.stream(msgs)
        next(stream)
        stream.close()
        time.sleep(0.3)
    finally:
        hook.remove()
    assert n_full > 10 and len(calls) <= 3


def test_garbage_llm_falls_back_to_rules_and_template(resources, tiny_chat):
    plain = build_manager(resources, weights=RankerWeights.prior())
    llm = build_manager(resources, weights=RankerWeights.prior(), chat=tiny_chat, llm_understanding=True,
                        reply_mode="full")
    a = plain.respond(plain.new_state(), "something like Alien but funnier")
    b = llm.respond(llm.new_state(), "something like Alien but funnier")
    assert [s.item_id for s in a.suggestions] == [s.item_id for s in b.suggestions]
    understand = b.trace[0].summary
    assert "rejected" in understand and "fell back to the rules" in understand
    reply = [e for e in b.trace if e.tool == "reply"][0]
    assert reply.args == {"writer": "llm"} and "used the template" in reply.summary
    assert all(s.title in b.reply for s in b.suggestions)
    parts = list(llm.stream(llm.new_state(), "a war movie"))
    assert parts[-1].reply and all(s.title in parts[-1].reply for s in parts[-1].suggestions)


def test_reply_checker(resources):
    check = ReplyChecker(TitleFinder(resources.titles)).check
    items = [ReplyItem(2, "The Matrix", 1999, "cyberpunk"), ReplyItem(11, "Heat", 1995, "crime")]
    assert check("Try The Matrix (1999), a cyberpunk classic, and Heat for a crime fix.", items) == []
    assert check("Try The Matrix only.", items)                                   # misses Heat
    assert check("The Matrix and Heat, or maybe The Godfather: Part II.", items)    # names another movie
    assert check('The Matrix, Heat and "Space Cats 3".', items)                   # invents one
    assert check("Loved Jaws? Then The Matrix and Heat.", items, user_text="I loved Jaws") == []   # echo is fine


class SentenceChat:
    """Streams a fixed sentence per call (one per attempt)."""
    def __init__(self, sentences):
        self.sentences, self.calls = list(sentences), 0

    def stream(self, messages, **kw):
        from langchain_core.messages import AIMessageChunk
        text = self.sentences[min(self.calls, len(self.sentences) - 1)]
        self.calls += 1
        for word in text.split(" "):
            yield AIMessageChunk(content=word + " ")


def test_intro_mode_checks_the_sentence(resources):
    good = build_manager(resources, weights=RankerWeights.prior(), chat=SentenceChat(["Here are some gems for you!"]))
    t = good.respond(good.new_state(), "a crime drama")
    assert t.reply.startswith("Here are some gems for you!") and all(s.title in t.reply for s in t.suggestions)
    bad = build_manager(resources, weights=RankerWeights.prior(),
                        chat=SentenceChat(["You will love The Godfather: Part II!", "Try Casablanca!"]))
    t = bad.respond(bad.new_state(), "an animated movie")
    log = [e.summary for e in t.trace if e.tool == "reply"][0]
    assert "used the template" in log and "Godfather" not in t.reply and "Casablanca" not in t.reply


class FakeChat:
    def __init__(self, text):
        self.text = text

    def invoke(self, messages, **kw):
        return AIMessage(self.text)


def test_llm_only_maps_titles_to_the_catalogue(resources):
    sys_ = LLMOnlySystem(resources, FakeChat("1. The Matrix (1999)\n2. Oppenheimer (2023)\n- Heat\nJaws (1975)"))
    s = sys_.start(None)
    out = sys_.turn(s, "an action movie")
    assert out.ranked == [2, 11, 16] and sys_.unmatched == 1
    out2 = sys_.turn(out.state, "more")
    assert out2.ranked == []          # everything it names was shown already


@pytest.mark.slow
def test_real_small_llm_writes_checked_replies(resources):
    """SmolLM2-135M from its PyPI package: every reply either passes the title check or is the template."""
    from dialog.llm import LocalChatModel
    from ilm.config import RuntimeConfig
    chat = LocalChatModel.load("smollm2-135m", RuntimeConfig(backend="transformers", quantize="none"))
    m = build_manager(resources, weights=RankerWeights.prior(), chat=chat, llm_understanding=True)
    t = m.respond(m.new_state(), "something like Alien but funnier")
    assert t.suggestions and all(s.title in t.reply for s in t.suggestions)
    log = [e.summary for e in t.trace if e.tool == "reply"][0]
    assert "passed the" in log or "used the template" in log


class BrokenChat:
    """Streams two words, then the backend dies."""

    def stream(self, messages, **kw):
        from langchain_core.messages import AIMessageChunk
        yield AIMessageChunk(content="Here are ")
        yield AIMessageChunk(content="some ")
        raise RuntimeError("llama_decode returned -3")


def test_a_backend_that_fails_mid_stream_gets_the_template_reply(resources):
    from dialog.reply import Retract
    m = build_manager(resources, weights=RankerWeights.prior(), chat=BrokenChat())
    parts = list(m.stream(m.new_state(), "a crime drama"))
    turn = parts[-1]
    assert any(isinstance(p, Retract) for p in parts[:-1])          # the broken draft is taken back
    assert turn.suggestions and all(s.title in turn.reply for s in turn.suggestions)
    reply = [e for e in turn.trace if e.tool == "reply"][0]
    assert reply.args == {"writer": "template (LLM failed)"} and "llama_decode returned -3" in reply.summary
    assert turn.state.messages[-1] == {"role": "assistant", "text": turn.reply}


def test_a_busy_llm_says_the_reply_is_queued(resources, tiny_chat):
    import threading

    from dialog.reply import Queued
    held, release = threading.Event(), threading.Event()

    def hold():
        with tiny_chat.runtime.lock:
            held.set()
            release.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(10)
    try:
        first = next(iter(tiny_chat.stream([HumanMessage("something funny")], max_new_tokens=2)))
        assert first.response_metadata.get("queued") is True
        m = build_manager(resources, weights=RankerWeights.prior(), chat=tiny_chat)
        parts = list(m.stream(m.new_state(), "a war movie"))
        assert any(isinstance(p, Queued) for p in parts) and parts[-1].suggestions
    finally:
        release.set()
        t.join()
    free = next(iter(tiny_chat.stream([HumanMessage("something funny")], max_new_tokens=2)))
    assert not free.response_metadata.get("queued")


@pytest.mark.llamacpp
def test_the_small_gguf_through_llamacpp_writes_checked_replies(resources):
    """The product's LLM path end to end on a real model: SmolLM2-135M's GGUF through llama.cpp
    writes the opening, streamed, and every title that reaches the person is a chosen one."""
    from dialog.llm import LocalChatModel
    from ilm.config import RuntimeConfig
    chat = LocalChatModel.load("smollm2-135m", RuntimeConfig(backend="llamacpp", n_ctx=1024))
    assert chat.backend == "llamacpp"
    m = build_manager(resources, weights=RankerWeights.prior(), chat=chat)
    m.warm_up()
    parts = list(m.stream(m.new_state(), "something like Alien but funnier"))
    t = parts[-1]
    assert t.suggestions and all(s.title in t.reply for s in t.suggestions)
    assert len([p for p in parts[:-1] if p]) > 2                     # streamed in pieces
    log = [e.summary for e in t.trace if e.tool == "reply"][0]
    assert "passed the" in log or "used the template" in log


@pytest.mark.slow
def test_the_default_llm_through_llamacpp_writes_checked_replies(resources):
    from dialog.llm import LocalChatModel
    from ilm.config import RuntimeConfig
    chat = LocalChatModel.load("qwen2.5-coder-1.5b", RuntimeConfig(backend="llamacpp"))
    m = build_manager(resources, weights=RankerWeights.prior(), chat=chat, llm_understanding=True)
    t = m.respond(m.new_state(), "I loved Heat. Something darker, after 1990?")
    assert t.suggestions and all(s.title in t.reply for s in t.suggestions)
    assert "understanding: llm" in t.trace[0].summary
