"""The demo in a real browser: Debian's Chromium, driven by Playwright, against real uvicorn.

Each page is a separate browser context (its own cookie jar), so two pages are two users.
The browser's own ``EventSource`` does everything a user's browser would: it sends the
session cookie, reconnects after the server drops it, and resumes with ``Last-Event-ID``.

Screenshots go to ``test-artifacts/``. With ``SSE_CHANNELS_UPDATE_SCREENSHOT=1`` the page
of the first test is also written to ``docs/images/demo.png`` (the README's picture).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from _servers import RunningServer, serve_in_thread
from sse_channels.demo import BROADCAST, DemoApp, user_channel

if TYPE_CHECKING:
    from collections.abc import Iterator

    from playwright.sync_api import Browser, BrowserContext, Page

    from sse_channels._types import Receive, Scope, Send

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)",
)

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
DOCS_SCREENSHOT = ROOT / "docs" / "images" / "demo.png"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Long enough for a slow CI machine, short enough that a hang fails fast.
WAIT_MS = 10_000


class Recorder:
    """Wraps the demo and records each ``/events`` request's user and ``Last-Event-ID``."""

    def __init__(self, app: DemoApp) -> None:
        self.app = app
        self.requests: list[tuple[str | None, str | None]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/events":
            header = dict(scope["headers"]).get(b"last-event-id")
            self.requests.append((self.app.user(scope), header.decode() if header else None))
        await self.app(scope, receive, send)


class Demo:
    """The demo served by uvicorn in a thread; the test reaches into its event loop."""

    def __init__(self, server: RunningServer, app: DemoApp, recorder: Recorder) -> None:
        self.server = server
        self.url = server.url
        self.app = app
        self.requests = recorder.requests
        self.contexts: list[BrowserContext] = []

    def notice(self, user: str, *texts: str, drop: bool = False) -> list[str]:
        """Send "notice" events to a user's private channel; with ``drop``, first end the
        user's open streams (``store.revoke``), so the events arrive while the browser is
        reconnecting. Returns the events' ids."""
        store = self.app.store

        async def run() -> list[str]:
            if drop:
                assert store.revoke(key=user) == 1
            ids = []
            for text in texts:
                event = await store.send(user_channel(user), {"text": text}, event="notice")
                assert event.id is not None
                ids.append(event.id)
            return ids

        return self.server.run(run)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM is not None
    with sync_playwright() as playwright:
        # Playwright gives the browser a new, empty profile directory of its own.
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def demo(browser: Browser) -> Iterator[Demo]:
    app = DemoApp(retry=500)
    recorder = Recorder(app)
    with serve_in_thread(recorder) as server:
        demo = Demo(server, app, recorder)
        yield demo
        for context in demo.contexts:
            context.close()
        # Open streams would hold the server's shutdown up: closing the store ends them.
        server.run(app.store.aclose)


class Tab:
    """One page in a browser context of its own: its own cookies, so its own user."""

    def __init__(self, browser: Browser, demo: Demo) -> None:
        context = browser.new_context(viewport={"width": 960, "height": 720})
        context.set_default_timeout(WAIT_MS)
        demo.contexts.append(context)
        self.page = context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.goto(demo.url + "/")
        self.page.wait_for_selector("#login-panel:not([hidden])")

    def log_in(self, user: str) -> None:
        self.page.click(f'button[data-user="{user}"]')
        self.page.wait_for_selector('#state[data-state="live"]')
        assert self.text("#me") == user

    def text(self, selector: str) -> str | None:
        return self.page.text_content(selector)

    def wait_for(self, text: str) -> None:
        self.page.locator("#feed .text", has_text=text).first.wait_for()

    def feed(self) -> list[str]:
        """The texts in the page's feed, oldest first (the page shows newest first)."""
        return self.page.locator("#feed .text").all_text_contents()[::-1]

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        self.page.evaluate("() => document.activeElement?.blur()")
        self.page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")
        return path


def test_friend_sees_login_and_broadcast_reaches_both_but_private_events_stay_private(
    browser: Browser, demo: Demo
) -> None:
    alice = Tab(browser, demo)
    bob = Tab(browser, demo)
    bob.log_in("bob")

    alice.log_in("alice")
    bob.wait_for("alice is online")

    with httpx.Client(base_url=demo.url) as dave:  # bob's friend, not alice's
        dave.post("/login", data={"user": "dave"}).raise_for_status()
    bob.wait_for("dave is online")
    demo.notice("bob", "for bob only")
    bob.wait_for("for bob only")

    alice.page.fill("#broadcast-text", "hello everybody")
    alice.page.click("#broadcast-form button")
    bob.page.fill("#broadcast-text", "hi alice")
    bob.page.press("#broadcast-text", "Enter")
    for tab in (alice, bob):
        tab.wait_for("alice: hello everybody")
        tab.wait_for("bob: hi alice")

    # Alice's stream is one ordered stream: bob's events, sent before the broadcasts she
    # already has, would be on her page by now.
    assert alice.feed() == ["alice: hello everybody", "bob: hi alice"]
    assert bob.feed() == [
        "alice is online",
        "dave is online",
        "for bob only",
        "alice: hello everybody",
        "bob: hi alice",
    ]
    assert bob.text("#state") == "live"
    assert bob.text("#last-id") == bob.page.locator("#feed li").first.get_attribute("data-id")
    alice.screenshot("demo-alice.png")
    path = bob.screenshot("demo-bob.png")
    if os.environ.get("SSE_CHANNELS_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(path, DOCS_SCREENSHOT)
        print(f"screenshot: {DOCS_SCREENSHOT}")
    assert alice.errors == bob.errors == []


def test_dropped_connection_resumes_with_the_browsers_last_event_id_showing_each_event_once(
    browser: Browser, demo: Demo
) -> None:
    bob = Tab(browser, demo)
    bob.log_in("bob")
    before = demo.notice("bob", "note 1", "note 2", "note 3")
    bob.wait_for("note 3")
    assert bob.text("#last-id") == before[-1]

    # The server ends bob's stream, then sends while his browser waits to reconnect.
    demo.notice("bob", "note 4", "note 5", "note 6", drop=True)
    bob.wait_for("note 6")
    assert bob.text("#reconnects") == "1"
    demo.notice("bob", "note 7", "note 8")
    bob.wait_for("note 8")

    assert bob.feed() == [f"note {n}" for n in range(1, 9)]
    # The browser itself sent the id of the last event it had when it reconnected.
    assert demo.requests == [("bob", None), ("bob", before[-1])]
    assert bob.text("#state") == "live"
    bob.screenshot("demo-resume.png")
    assert bob.errors == []


def test_no_session_gets_401_and_a_user_cannot_choose_another_users_channel(
    browser: Browser, demo: Demo
) -> None:
    stranger = Tab(browser, demo)
    # A 401 makes EventSource give up for good: readyState CLOSED (2), no reconnect.
    outcome = stranger.page.evaluate(
        """() => new Promise((resolve) => {
            const es = new EventSource("/events");
            es.onopen = () => resolve("open");
            es.onerror = () => resolve(es.readyState);
        })"""
    )
    assert outcome == 2
    assert stranger.page.evaluate("() => fetch('/events').then((r) => r.status)") == 401

    alice = Tab(browser, demo)
    alice.log_in("alice")
    # Asking for bob's channel in the query changes nothing: channels come from the session.
    alice.page.evaluate(
        """() => new Promise((resolve) => {
            const seen = [];
            const es = new EventSource("/events?channel=user:bob&channels=user:bob");
            for (const type of ["message", "presence", "broadcast", "notice", "gap"]) {
                es.addEventListener(type, (e) => seen.push(JSON.parse(e.data).text));
            }
            window.probe = seen;
            es.onopen = () => resolve(null);
        })"""
    )
    demo.notice("bob", "secret for bob")
    demo.notice("alice", "for alice")
    alice.page.wait_for_function("() => window.probe.includes('for alice')")
    alice.wait_for("for alice")
    assert alice.page.evaluate("() => window.probe") == ["for alice"]
    assert alice.feed() == ["for alice"]
    assert stranger.errors == alice.errors == []


# -- "online now": the presence of the broadcast channel ---------------------------------


def online(page: Page) -> str:
    return ",".join(page.locator("#online li").all_text_contents())


def wait_online(page: Page, expected: str, timeout_ms: float = WAIT_MS) -> float:
    """Wait until the page's "online now" list is ``expected``; the seconds it took."""
    began = time.monotonic()
    page.wait_for_function(
        "(expected) => [...document.querySelectorAll('#online li')]"
        ".map((item) => item.textContent).join(',') === expected",
        arg=expected,
        timeout=timeout_ms,
    )
    return time.monotonic() - began


def members(demo: Demo) -> dict[str, list[object]]:
    return demo.server.run(demo.app.presence.members, BROADCAST)


def test_online_now_a_late_login_sees_who_is_online_already(browser: Browser, demo: Demo) -> None:
    bob = Tab(browser, demo)
    bob.log_in("bob")
    carol = Tab(browser, demo)
    carol.log_in("carol")
    wait_online(bob.page, "bob,carol")
    # Alice logs in later: her page's snapshot already lists the others.
    alice = Tab(browser, demo)
    alice.log_in("alice")
    wait_online(alice.page, "alice,bob,carol")
    assert alice.text("#online-count") == "3"
    wait_online(bob.page, "alice,bob,carol")  # and the others see her join
    wait_online(carol.page, "alice,bob,carol")
    alice.screenshot("demo-online.png")
    assert alice.errors == bob.errors == carol.errors == []


def test_online_now_closing_the_last_tab_leaves_within_5_seconds(
    browser: Browser, demo: Demo
) -> None:
    bob = Tab(browser, demo)
    bob.log_in("bob")
    alice = Tab(browser, demo)
    alice.log_in("alice")
    wait_online(bob.page, "alice,bob")
    alice.page.close()  # her only tab: the browser drops the connection
    took = wait_online(bob.page, "bob", timeout_ms=5_000)
    assert took < 5
    assert set(members(demo)) == {"bob"}
    assert bob.errors == []


def test_online_now_two_tabs_of_one_user_count_once(browser: Browser, demo: Demo) -> None:
    alice = Tab(browser, demo)
    alice.log_in("alice")
    # A second tab of the same browser: the same cookie, so the same user.
    second = alice.page.context.new_page()
    second.goto(demo.url + "/")
    second.wait_for_selector('#state[data-state="live"]')
    bob = Tab(browser, demo)
    bob.log_in("bob")
    wait_online(bob.page, "alice,bob")
    assert bob.text("#online-count") == "2"
    wait_online(second, "alice,bob")
    assert {m: len(tabs) for m, tabs in members(demo).items()} == {"alice": 2, "bob": 1}
    joins = bob.page.evaluate("() => document.querySelectorAll('#online li').length")
    assert joins == 2
    alice.page.close()  # one of her two tabs: she is still online
    time.sleep(1.5)
    assert online(bob.page) == "alice,bob"
    assert {m: len(tabs) for m, tabs in members(demo).items()} == {"alice": 1, "bob": 1}
    second.close()  # the last one
    wait_online(bob.page, "bob", timeout_ms=5_000)
    assert bob.errors == []
