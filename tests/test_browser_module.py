"""The browser module in real Chromium (Debian's, driven by Playwright) against real uvicorn,
and the app that serves it.

The page imports ``/sse-channels.js`` (served by ``sse_channels.browser.module_app()``) and
reads ``/events``, an ``SSEApp`` over the store's ``news`` channel. The server counts its
subscribers and records each request's ``Last-Event-ID`` header and query, so the tests see
when the browser connects, resumes and hangs up.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from _servers import RunningServer, serve_in_thread
from _sse_apps import Watched, route, status
from sse_channels import ChannelStore, Presence, PresenceSession
from sse_channels.asgi import SSEApp
from sse_channels.browser import CONTENT_TYPE, MODULE_PATH, module_app, module_bytes

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from playwright.sync_api import Browser, Page

    from sse_channels._types import Receive, Scope, Send

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)",
)
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
WAIT_MS = 10_000

PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>sse-channels.js</title>
<script type="module">
  import * as sse from "/sse-channels.js";
  window.sse = sse;
  window.ready = true;
</script></head><body></body></html>
"""


async def page(scope: Scope, receive: Receive, send: Send) -> None:
    headers = [(b"content-type", b"text/html; charset=utf-8")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": PAGE})


class Site:
    """The test page, the module and the stream, served by uvicorn in a thread."""

    def __init__(self, server: RunningServer, store: ChannelStore, app: Watched) -> None:
        self.server = server
        self.store = store
        self.app = app
        self.url = server.url

    def subscribers(self) -> int:
        return self.server.call(lambda: self.store.statistics().subscribers)

    def send(self, *data: str, drop: bool = False) -> list[str]:
        """Send ``data`` on ``news``; with ``drop``, first end the open streams (revoke)."""

        async def run() -> list[str]:
            if drop:
                assert self.store.revoke(key="page") >= 1
            ids = []
            for text in data:
                event = await self.store.send("news", {"text": text}, event="news")
                assert event.id is not None
                ids.append(event.id)
            return ids

        return self.server.run(run)

    def events_requests(self) -> list[tuple[str | None, str | None]]:
        """Per ``/events`` request: its ``Last-Event-ID`` header and ``last_event_id`` query."""
        return [
            (r.headers.get("last-event-id"), r.query.get("last_event_id"))
            for r in self.app.requests
            if r.path == "/events"
        ]


@pytest.fixture
def site() -> Iterator[Site]:
    store = ChannelStore()
    events = SSEApp(store, "news", retry=200, key=lambda scope: "page")
    routes = {"/": page, "/sse-channels.js": module_app(), "/events": events}
    app = Watched(route({**routes, "/refused": status(401)}))
    with serve_in_thread(app) as server:
        yield Site(server, store, app)
        server.run(store.aclose)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM is not None
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


def open_tab(browser: Browser, url: str) -> Iterator[Page]:
    """A fresh tab on the test page at ``url``, the module loaded; no page error allowed."""
    context = browser.new_context()
    context.set_default_timeout(WAIT_MS)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.goto(url + "/")
    tab.wait_for_function("() => window.ready === true")
    yield tab
    context.close()
    assert errors == []


@pytest.fixture
def tab(browser: Browser, site: Site) -> Iterator[Page]:
    yield from open_tab(browser, site.url)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the condition did not become true in time")
        time.sleep(0.02)


def evaluate(tab: Page, script: str, arg: Any = None) -> Any:
    return tab.evaluate(script, arg)


# -- the store contract ------------------------------------------------------------------------


@needs_chromium
def test_store_calls_fn_at_once_and_the_last_unsubscribe_closes_the_connection(
    site: Site, tab: Page
) -> None:
    at_once = evaluate(
        tab,
        """() => {
            const feed = sse.source("/events");
            const news = feed.json("news", "initial");
            window.calls = [];
            window.stopA = news.subscribe((v) => calls.push(["a", v]));
            const afterA = calls.length;
            window.stopB = news.subscribe((v) => calls.push(["b", v]));
            return [afterA, calls.length];
        }""",
    )
    # Each subscriber was called during subscribe() itself, with the current value.
    assert at_once == [1, 2]
    assert evaluate(tab, "() => calls") == [["a", "initial"], ["b", "initial"]]
    wait_until(lambda: site.subscribers() == 1)  # two subscribers, one connection
    site.send("first")
    tab.wait_for_function("() => calls.length === 4")
    evaluate(tab, "() => stopA()")
    site.send("second")
    tab.wait_for_function("() => calls.length === 5")
    assert evaluate(tab, "() => calls.slice(2)") == [
        ["a", {"text": "first"}],
        ["b", {"text": "first"}],
        ["b", {"text": "second"}],
    ]
    assert site.subscribers() == 1  # the connection outlived the first unsubscribe
    evaluate(tab, "() => stopB()")
    wait_until(lambda: site.subscribers() == 0 and site.app.open == 0)
    assert len(site.events_requests()) == 1


@needs_chromium
def test_reconnect_with_last_event_id_shows_each_event_once(site: Site, tab: Page) -> None:
    evaluate(
        tab,
        """() => {
            window.feed = sse.source("/events");
            window.seen = [];
            window.stop = feed.json("news").subscribe((v) => { if (v) seen.push(v.text); });
        }""",
    )
    wait_until(lambda: site.subscribers() == 1)
    before = site.send("1", "2", "3")
    tab.wait_for_function("() => seen.length === 3")
    assert evaluate(tab, "() => sse.get(feed.lastEventId)") == before[-1]
    # The server ends the stream, then sends while the browser waits to reconnect.
    site.send("4", "5", "6", drop=True)
    tab.wait_for_function("() => seen.length === 6")
    site.send("7", "8")
    tab.wait_for_function("() => seen.length === 8")
    assert evaluate(tab, "() => seen") == [str(n) for n in range(1, 9)]
    # The browser itself sent Last-Event-ID when it reconnected.
    assert site.events_requests() == [(None, None), (before[-1], None)]

    # All subscribers leave; events go on; a new subscriber resumes through the query.
    evaluate(tab, "() => stop()")
    wait_until(lambda: site.subscribers() == 0)
    last = evaluate(tab, "() => sse.get(feed.lastEventId)")
    site.send("9", "10")
    evaluate(
        tab,
        """() => {
            window.stop = feed.json("news").subscribe((v) => { if (v) seen.push(v.text); });
        }""",
    )
    tab.wait_for_function("() => seen.length >= 11")
    # The store still held "8" (its current value) at the new subscribe: that call is the
    # contract, not a repeat from the server. The server sent 9 and 10 once each.
    assert evaluate(tab, "() => seen") == [*map(str, range(1, 9)), "8", "9", "10"]
    assert site.events_requests()[-1] == (None, last)
    evaluate(tab, "() => stop()")
    wait_until(lambda: site.subscribers() == 0)


@needs_chromium
def test_state_transitions_can_be_seen(site: Site, tab: Page) -> None:
    evaluate(
        tab,
        """() => {
            window.feed = sse.source("/events");
            window.states = [];
            feed.state.subscribe((s) => states.push(s));
            window.stop = feed.select("news").subscribe(() => {});
        }""",
    )
    tab.wait_for_function("() => states.at(-1) === 'open'")
    wait_until(lambda: site.subscribers() == 1)
    site.send(drop=True)
    tab.wait_for_function("() => states.length === 5 && states.at(-1) === 'open'")
    evaluate(tab, "() => stop()")
    assert evaluate(tab, "() => states") == [
        "closed",
        "connecting",
        "open",
        "reconnecting",
        "open",
        "closed",
    ]
    # A refusal (401) closes for good: the browser does not retry it.
    evaluate(
        tab,
        """() => {
            const refused = sse.source("/refused");
            window.refusedStates = [];
            refused.state.subscribe((s) => refusedStates.push(s));
            refused.select().subscribe(() => {});
        }""",
    )
    tab.wait_for_function("() => refusedStates.at(-1) === 'closed' && refusedStates.length === 3")
    assert evaluate(tab, "() => refusedStates") == ["closed", "connecting", "closed"]
    wait_until(lambda: site.subscribers() == 0 and site.app.open == 0)


@needs_chromium
def test_gap_store_and_hook_see_a_resume_from_an_unknown_id(site: Site, tab: Page) -> None:
    evaluate(
        tab,
        """() => {
            const feed = sse.source("/events", { lastEventId: "gone-1" });
            window.gaps = [];
            window.hooked = [];
            feed.gap.subscribe((g) => gaps.push(g));
            feed.onGap((g) => hooked.push(g));
        }""",
    )
    tab.wait_for_function("() => gaps.length === 2")
    gaps = evaluate(tab, "() => gaps")
    assert gaps[0] is None
    assert gaps[1]["reason"] == "unknown_id"
    assert gaps[1]["channel"] == "news"
    assert gaps[1]["id"]
    assert evaluate(tab, "() => hooked") == gaps[1:]
    assert site.events_requests() == [(None, "gone-1")]


# -- the app that serves the module ----------------------------------------------------------


@pytest.fixture
def module_url() -> Iterator[str]:
    with serve_in_thread(route({"/static/sse-channels.js": module_app()})) as server:
        yield server.url + "/static/sse-channels.js"


def test_module_app_serves_the_module_as_javascript_with_an_etag(module_url: str) -> None:
    body = MODULE_PATH.read_bytes()
    assert module_bytes() == body
    with httpx.Client() as client:
        response = client.get(module_url)
        assert response.status_code == 200
        assert response.content == body
        assert response.headers["content-type"] == CONTENT_TYPE
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-content-type-options"] == "nosniff"
        etag = response.headers["etag"]
        assert etag == '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        again = client.get(module_url, headers={"if-none-match": etag})
        assert again.status_code == 304
        assert again.content == b""
        head = client.head(module_url)
        assert head.status_code == 200
        assert head.content == b""
        assert int(head.headers["content-length"]) == len(body)
        post = client.post(module_url)
        assert post.status_code == 405
        assert post.headers["allow"] == "GET, HEAD"


def test_module_app_max_age_and_its_validation() -> None:
    assert (b"cache-control", b"public, max-age=3600") in module_app(max_age=3600).headers
    for bad in (-1, 1.5, True, "60"):
        with pytest.raises(ValueError):
            module_app(max_age=bad)  # type: ignore[arg-type]


def test_module_file_is_a_plain_es_module_with_the_documented_exports() -> None:
    text = MODULE_PATH.read_text("utf-8")
    for name in ("source", "get", "STATES"):
        assert f"export function {name}(" in text or f"export const {name} =" in text
    assert not re.search(r"^\s*import\b", text, re.MULTILINE)  # no dependency to bundle
    assert MODULE_PATH.with_name("sse-channels.d.ts").is_file()


# -- presence ----------------------------------------------------------------------------------


class PresenceSite:
    """``/presence``: a stream of ``presence:room``; members join and leave from the server."""

    def __init__(self, server: RunningServer, store: ChannelStore, presence: Presence) -> None:
        self.server = server
        self.store = store
        self.presence = presence
        self.url = server.url
        self.sessions: dict[str, list[PresenceSession]] = {}

    def join(self, member: str, device: str) -> None:
        async def run() -> None:
            session = self.presence.join("room", member, {"device": device})
            self.sessions.setdefault(member, []).append(session)
            await self.presence.flush()

        self.server.run(run)

    def leave(self, member: str) -> None:
        """One of ``member``'s connections leaves (the oldest)."""

        async def run() -> None:
            self.sessions[member].pop(0).leave()
            await self.presence.flush()

        self.server.run(run)

    def drop_streams(self) -> None:
        assert self.server.call(lambda: self.store.revoke(key="page")) >= 1


@pytest.fixture
def presence_site() -> Iterator[PresenceSite]:
    store = ChannelStore()
    presence = Presence(store)
    # A watcher's stream reads presence:room only, so it joins nothing itself.
    events = SSEApp(store, "presence:room", retry=200, key=lambda scope: "page", presence=presence)
    pages = route(
        {
            "/": page,
            "/sse-channels.js": module_app(),
            "/presence": events,
            "/favicon.ico": status(404),
        }
    )

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        # The stream app's lifespan runs the store and the presence.
        await (events if scope["type"] == "lifespan" else pages)(scope, receive, send)

    with serve_in_thread(app) as server:
        yield PresenceSite(server, store, presence)


@pytest.fixture
def presence_tab(browser: Browser, presence_site: PresenceSite) -> Iterator[Page]:
    yield from open_tab(browser, presence_site.url)


ONLINE = """() => {
    const value = window.online.at(-1);
    return {
        members: Object.fromEntries([...value.members].sort(([a], [b]) => (a < b ? -1 : 1))),
        count: value.count,
    };
}"""


def wait_online(tab: Page, members: dict[str, list[Any]]) -> None:
    """Wait until the page's latest presence value names ``members``; check their metas."""
    tab.wait_for_function(
        """(want) => {
                const value = window.online.at(-1);
                const names = [...value.members.keys()].sort();
                const same = JSON.stringify(names) === JSON.stringify(want);
                return same && value.count === names.length;
            }""",
        arg=sorted(members),
    )
    assert evaluate(tab, ONLINE) == {"members": members, "count": len(members)}


@needs_chromium
def test_presence_store_gets_who_is_online_then_follows_joins_and_leaves(
    presence_site: PresenceSite, presence_tab: Page
) -> None:
    site, tab = presence_site, presence_tab
    site.join("alice", "laptop")
    site.join("alice", "phone")  # a second tab of alice: no second join
    site.join("bob", "laptop")
    evaluate(
        tab,
        """() => {
            window.feed = sse.source("/presence");
            window.online = [];
            window.stop = feed.presence().subscribe((value) => online.push(value));
        }""",
    )
    # The page opened after they joined: it learns both from the snapshot, with every
    # connection's metadata.
    wait_online(
        tab,
        {"alice": [{"device": "laptop"}, {"device": "phone"}], "bob": [{"device": "laptop"}]},
    )
    site.leave("alice")  # one of her two connections: she is still online
    site.join("carol", "tablet")
    site.leave("bob")
    wait_online(
        tab,
        {"alice": [{"device": "laptop"}, {"device": "phone"}], "carol": [{"device": "tablet"}]},
    )
    site.leave("alice")
    wait_online(tab, {"carol": [{"device": "tablet"}]})
    # A value once handed out never changes: the first one still lists alice and bob.
    first = evaluate(tab, "() => [...online.find((v) => v.count > 0).members.keys()].sort()")
    assert first == ["alice", "bob"]
    evaluate(tab, "() => stop()")
    wait_until(lambda: site.server.call(lambda: site.store.statistics().subscribers) == 0)


@needs_chromium
def test_presence_store_rebuilds_the_exact_list_after_a_reconnect(
    presence_site: PresenceSite, presence_tab: Page
) -> None:
    site, tab = presence_site, presence_tab
    site.join("alice", "laptop")
    evaluate(
        tab,
        """() => {
            window.feed = sse.source("/presence");
            window.online = [];
            window.states = [];
            feed.state.subscribe((state) => states.push(state));
            feed.presence().subscribe((value) => online.push(value));
        }""",
    )
    wait_online(tab, {"alice": [{"device": "laptop"}]})
    tab.wait_for_function("() => states.at(-1) === 'open'")
    # The stream ends (revoked); the browser reconnects with Last-Event-ID after its retry.
    # What changed meanwhile comes as the resumed diffs, applied once each.
    site.drop_streams()
    site.join("bob", "phone")
    site.leave("alice")
    site.join("carol", "laptop")
    tab.wait_for_function("() => states.includes('reconnecting') && states.at(-1) === 'open'")
    wait_online(tab, {"bob": [{"device": "phone"}], "carol": [{"device": "laptop"}]})
    assert evaluate(tab, "() => online.at(-1).count") == 2
