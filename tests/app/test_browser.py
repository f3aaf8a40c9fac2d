"""The chat page in a real browser: Debian's headless Chromium driven by Playwright, against the
app served in-process on a free local port, over the real dialog manager on smoke resources.

Needs ``/usr/bin/chromium`` (``apt-get install -y chromium``); never ``playwright install``.
Without it these tests fail with a message saying how to install it (``make test`` installs it).
"""
from __future__ import annotations

import re
import shutil
import socket
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
REPORTS = Path(__file__).resolve().parents[2] / "reports"
TIMEOUT_MS = 30_000

if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
    pytest.fail(f"{CHROMIUM} is missing: `make chromium` (apt-get install -y chromium) installs it",
                pytrace=False)

from playwright.sync_api import expect, sync_playwright  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(real_manager, tmp_path_factory):
    """The page served on a free port for this module; closed afterwards."""
    from app.store import Store
    from app.ui import build_ui, launch_options
    manager, res, _ = real_manager
    store = Store(tmp_path_factory.mktemp("db") / "c.sqlite")
    demo = build_ui(manager, store, user_ids=[int(u) for u in res.split.user_ids],
                    reports_dir=tmp_path_factory.mktemp("reports"))
    demo.queue(default_concurrency_limit=2)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_options())
    yield f"http://127.0.0.1:{port}", store
    demo.close()
    store.close()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def outside_requests():
    return []


@pytest.fixture
def open_page(browser, server, outside_requests):
    """Open the page in a fresh browser context (a new person); records requests that leave the server."""
    url, _ = server
    contexts = []

    def _open(width=1280, height=900):
        ctx = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("request", lambda r: None if r.url.startswith((url, "data:", "blob:"))
                else outside_requests.append(r.url))
        page.goto(url)
        expect(page.locator("#state-panel")).to_contain_text("Turn 0")
        return page

    yield _open
    for ctx in contexts:
        ctx.close()
    assert outside_requests == [], f"the page asked outside addresses: {outside_requests[:5]}"


def send(page, text: str, turn: int):
    page.locator("#msg textarea").fill(text)
    page.locator("#msg textarea").press("Enter")
    expect(page.locator("#state-panel")).to_contain_text(f"Turn {turn}")


def card_titles(page) -> list[str]:
    return [t.strip() for t in page.locator(".mc-card .mc-title").all_inner_texts()]


def test_message_gets_a_reply_and_cards(open_page):
    page = open_page()
    send(page, "a funny animated movie", 1)
    chat = page.locator("#chatbot")
    expect(chat).to_contain_text("a funny animated movie")
    expect(chat).not_to_contain_text("…")
    expect(chat).not_to_contain_text("&#")                       # apostrophes and quotes are not mangled
    expect(page.locator(".mc-card").first).to_be_visible()
    assert len(card_titles(page)) >= 3
    expect(page.locator(".mc-card .mc-reason").first).not_to_be_empty()


def test_not_for_me_changes_state_and_next_suggestions(open_page):
    page = open_page()
    send(page, "a comedy please", 1)
    expect(page.locator(".mc-card").first).to_be_visible()
    before = card_titles(page)
    first = page.locator(".mc-card .mc-title").first.inner_text().strip()
    page.locator(".mc-cardcol").first.get_by_role("button", name="Not for me").click()
    expect(page.locator("#state-panel")).to_contain_text("Turn 2")
    expect(page.locator("#state-panel")).to_contain_text(re.compile(r"(Disliked|Not interested):[^\n]*" + re.escape(
        first.split(" (")[0])))
    expect(page.locator("#chatbot")).to_contain_text("is not for me")
    # the cards re-render after the state panel: wait for the rejected movie to leave the first card
    expect(page.locator(".mc-card .mc-title").first).not_to_have_text(first, timeout=TIMEOUT_MS)
    after = card_titles(page)
    assert after and after != before and first not in after


def test_start_over_clears_chat_cards_and_state(open_page):
    page = open_page()
    send(page, "something with action", 1)
    page.locator("#start-over").click()
    expect(page.locator("#state-panel")).to_contain_text("Nothing known yet")
    expect(page.locator("#notice")).to_contain_text("Started over")
    expect(page.locator(".mc-card")).to_have_count(0)
    expect(page.locator("#chatbot")).not_to_contain_text("something with action")
    send(page, "a drama", 1)
    expect(page.locator(".mc-card").first).to_be_visible()


def test_two_browser_contexts_stay_separate(open_page):
    a, b = open_page(), open_page()
    a.locator("#msg textarea").fill("a comedy")
    b.locator("#msg textarea").fill("a drama from before 1980")
    a.locator("#msg textarea").press("Enter")
    b.locator("#msg textarea").press("Enter")
    expect(a.locator("#state-panel")).to_contain_text("Turn 1")
    expect(b.locator("#state-panel")).to_contain_text("Turn 1")
    send(a, "funnier", 2)
    expect(b.locator("#state-panel")).to_contain_text("Turn 1")
    expect(a.locator("#chatbot")).not_to_contain_text("before 1980")
    expect(b.locator("#chatbot")).not_to_contain_text("funnier")
    expect(b.locator("#state-panel")).to_contain_text("Years: any to 1979")
    expect(a.locator("#state-panel")).not_to_contain_text("Years:")


def test_script_and_html_are_shown_as_text(open_page):
    page = open_page()
    evil = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"><b>bold?</b>'
    send(page, evil, 1)
    expect(page.locator("#chatbot")).to_contain_text("<script>window.__pwned = 1</script>")
    expect(page.locator("#chatbot")).to_contain_text("<b>bold?</b>")
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#chatbot b").count() == 0


def test_bad_input_keeps_the_page_usable(open_page):
    page = open_page()
    page.locator("#send").click()                                            # empty submit
    expect(page.locator("#notice")).to_contain_text("Type a message first")
    send(page, "x" * 10_000, 1)                                              # a very long message
    expect(page.locator("#notice")).to_contain_text("first 1,000")
    send(page, "😀 une comédie française, s'il vous plaît — 日本の映画も", 2)  # emoji, other languages
    expect(page.locator("#chatbot")).to_contain_text("日本の映画も")
    box = page.locator("#msg textarea")                                      # rapid repeated submits
    box.fill("a thriller")
    for _ in range(4):
        box.press("Enter")
    expect(page.locator("#state-panel")).to_contain_text(re.compile(r"Turn [34]"))
    turn = int(re.search(r"Turn (\d+)", page.locator("#state-panel").inner_text()).group(1))
    send(page, "something else then", turn + 1)
    expect(page.locator("#chatbot")).to_contain_text("something else then")
    expect(page.locator(".toast-body")).to_have_count(0)                     # no error pop-up


def test_why_view_and_screenshots(open_page, tmp_path):
    page = open_page()
    send(page, "a sci-fi movie like Alien", 1)
    expect(page.locator(".mc-card").first).to_be_visible()
    REPORTS.mkdir(exist_ok=True)
    page.screenshot(path=str(REPORTS / "ui.png"), full_page=True)
    page.get_by_role("tab", name="Why these?").click()
    why = page.locator("#why")
    for needle in ("Tools that ran", "retrieve", "rank", "Candidates retrieval returned", "ILM contribution"):
        expect(why).to_contain_text(needle)
    page.get_by_role("tab", name="Evaluation").click()
    expect(page.locator("#eval-md")).to_contain_text("No reports")
    phone = open_page(width=390, height=844)
    send(phone, "a sci-fi movie like Alien", 1)
    expect(phone.locator(".mc-card").first).to_be_visible()
    phone.screenshot(path=str(tmp_path / "ui-phone.png"), full_page=True)
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390 + 1    # no sideways scrolling


def test_start_as_a_movielens_user_shows_their_history(open_page):
    page = open_page()
    pick = page.locator("#user-pick input")
    pick.fill("not a user")
    pick.press("Enter")
    page.locator("#as-user").click()
    expect(page.locator("#notice")).to_contain_text("not a MovieLens user id")
    pick.fill("3")
    pick.press("Enter")
    page.locator("#as-user").click()
    expect(page.locator("#state-panel")).to_contain_text("returning MovieLens user 3")
    expect(page.locator("#state-panel")).to_contain_text("MovieLens history")
    send(page, "something new", 1)
    expect(page.locator(".mc-card").first).to_be_visible()
