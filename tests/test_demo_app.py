"""The demo's ASGI app over real HTTP (uvicorn in a thread): sessions, presence, refusals."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import httpx
import pytest

from _servers import serve_in_thread
from sse_channels import PresenceView, SSEDecoder
from sse_channels.demo import DemoApp

if TYPE_CHECKING:
    from collections.abc import Iterator

TIMEOUT = httpx.Timeout(10.0)
PRESENCE_EVENTS = ("snapshot", "join", "leave", "diff")


@pytest.fixture
def url() -> Iterator[str]:
    app = DemoApp()
    with serve_in_thread(app) as server:
        yield server.url
        server.run(app.store.aclose)  # ends open streams so the server can stop


def client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=TIMEOUT)


def texts_until(response: httpx.Response, last_id: str) -> list[str]:
    """The texts of the stream's events up to and including the event ``last_id``.

    "Online now" (the presence events of ``presence:broadcast``) has no text: skipped.
    """
    decoder = SSEDecoder()
    texts: list[str] = []
    for chunk in response.iter_bytes():
        for event in decoder.feed(chunk):
            if event.event in PRESENCE_EVENTS:
                continue
            texts.append(json.loads(event.data)["text"])
            if event.id == last_id:
                return texts
    raise AssertionError(f"the stream ended before {last_id}: {texts}")


def test_session_shows_the_user_after_login_and_the_cookie_is_httponly(url: str) -> None:
    with client(url) as bob:
        assert bob.get("/session").json()["user"] is None
        login = bob.post("/login", data={"user": "bob"})
        assert login.status_code == 200
        assert login.json()["friends"] == ["alice", "dave"]
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=Lax" in cookie
        assert bob.get("/session").json()["user"] == "bob"
        assert bob.post("/logout").status_code == 200
        assert bob.get("/session").json()["user"] is None


def test_refusals_unknown_user_other_origin_wrong_method_unknown_path(url: str) -> None:
    with client(url) as anyone:
        assert anyone.post("/login", data={"user": "mallory"}).status_code == 400
        other_origin = {"origin": "http://evil.example"}
        assert anyone.post("/login", data={"user": "bob"}, headers=other_origin).status_code == 403
        wrong_method = anyone.get("/login")
        assert wrong_method.status_code == 405
        assert "allow" in wrong_method.headers
        assert anyone.post("/events").status_code == 405
        assert anyone.get("/nowhere").status_code == 404
        assert anyone.get("/events").status_code == 401
        assert anyone.post("/broadcast", data={"text": "hi"}).status_code == 401
        assert anyone.get("/session").json()["user"] is None


def test_broadcast_needs_some_text_and_at_most_280_characters(url: str) -> None:
    with client(url) as carol:
        carol.post("/login", data={"user": "carol"}).raise_for_status()
        assert carol.post("/broadcast", data={"text": "   "}).status_code == 400
        assert carol.post("/broadcast", data={"text": "x" * 281}).status_code == 400
        assert carol.post("/broadcast", data={"text": "x" * 280}).status_code == 200


def test_friends_hear_online_once_per_user_and_offline_when_the_last_session_ends(
    url: str,
) -> None:
    with (
        client(url) as bob,
        client(url) as alice_here,
        client(url) as alice_there,
        client(url) as carol,
    ):
        bob.post("/login", data={"user": "bob"}).raise_for_status()
        with bob.stream("GET", "/events") as response:
            assert response.status_code == 200
            alice_here.post("/login", data={"user": "alice"}).raise_for_status()
            alice_there.post("/login", data={"user": "alice"}).raise_for_status()
            carol.post("/login", data={"user": "carol"}).raise_for_status()  # not bob's friend
            alice_here.post("/logout").raise_for_status()
            alice_there.post("/logout").raise_for_status()
            end = carol.post("/broadcast", data={"text": "end"}).json()["id"]
            assert texts_until(response, end) == [
                "alice is online",
                "alice is offline",
                "carol: end",
            ]


def test_logout_ends_the_sessions_stream_and_its_cookie_no_longer_streams(url: str) -> None:
    with client(url) as dave:
        dave.post("/login", data={"user": "dave"}).raise_for_status()
        session = dict(dave.cookies)
        with dave.stream("GET", "/events") as response:
            assert response.status_code == 200
            dave.post("/logout").raise_for_status()
            assert response.read().startswith(b":")  # the opening comment, then the end
    with httpx.Client(base_url=url, timeout=TIMEOUT, cookies=session) as replay:
        assert replay.get("/events").status_code == 401


def test_the_stream_carries_who_is_online_now_and_the_users_tabs_count_once(url: str) -> None:
    with client(url) as bob, client(url) as alice:
        bob.post("/login", data={"user": "bob"}).raise_for_status()
        alice.post("/login", data={"user": "alice"}).raise_for_status()
        with alice.stream("GET", "/events") as first, alice.stream("GET", "/events"):
            view = PresenceView()
            decoder = SSEDecoder()
            events = []
            with bob.stream("GET", "/events") as response:
                for chunk in response.iter_bytes():
                    for event in decoder.feed(chunk):
                        events.append(event.event)
                        view.apply(event.event, event.data)
                    if set(view.members) == {"alice", "bob"}:
                        break
            # A snapshot first, with alice (both tabs: once), then bob's own join.
            assert events[0] == "snapshot"
            assert events.count("join") <= 1
            assert first.status_code == 200
