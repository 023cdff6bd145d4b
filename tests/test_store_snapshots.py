"""Snapshot channels: a reader gets the state first, and a snapshot in place of a gap."""

from __future__ import annotations

from typing import Any

import pytest

from sse_channels import ChannelStore, Event

pytestmark = pytest.mark.anyio


def provider(state: dict[str, Any]) -> Any:
    async def snapshot(channel: str) -> Any:
        return state.get(channel)

    return snapshot


def kinds(events: list[Event]) -> list[tuple[str | None, str]]:
    return [(e.event, e.data) for e in events]


async def test_store_snapshot_comes_first_for_a_live_reader_with_the_newest_id() -> None:
    store = ChannelStore()
    store.provide_snapshot("feed:*", provider({"feed:a": {"n": 1}}))
    before = await store.send("other", "before")
    async with store.subscribe("feed:a", "other") as sub:
        await store.send("feed:a", "change")
        batch = await sub.receive_batch()
    assert kinds(batch) == [("snapshot", '{"n":1}'), (None, "change")]
    assert batch[0].id == f"{before.id}"  # the newest key when it subscribed
    # The snapshot's id is where the reader started: resuming from it misses nothing.
    async with store.subscribe("feed:a", "other", last_event_id=batch[0].id) as again:
        assert kinds(await again.receive_batch()) == [(None, "change")]


async def test_store_snapshot_replaces_a_gap_and_a_covered_resume_gets_none() -> None:
    store = ChannelStore(history=2)
    store.provide_snapshot("feed", provider({"feed": "state"}), event="state")
    first = await store.send("feed", "one")
    for n in range(3):
        await store.send("feed", f"later-{n}")
    async with store.subscribe("feed", last_event_id=first.id) as sub:
        batch = await sub.receive_batch()
    assert kinds(batch) == [("state", "state"), (None, "later-1"), (None, "later-2")]
    async with store.subscribe("feed", last_event_id="nope") as sub:
        assert kinds(await sub.receive_batch()) == [("state", "state")]
    async with store.subscribe("feed", last_event_id=batch[1].id) as sub:
        assert kinds(await sub.receive_batch()) == [(None, "later-2")]


async def test_store_snapshot_none_sends_nothing_and_a_gap_stays_a_gap() -> None:
    store = ChannelStore()
    store.provide_snapshot("feed", provider({}))
    async with store.subscribe("feed", last_event_id="nope") as sub:
        (event,) = await sub.receive_batch()
    assert event.event == "gap"
    async with store.subscribe("feed") as sub:
        await store.send("feed", "x")
        assert kinds(await sub.receive_batch()) == [(None, "x")]


async def test_store_snapshot_unregistered_is_no_longer_sent() -> None:
    store = ChannelStore()
    unregister = store.provide_snapshot("feed", provider({"feed": "s"}))
    unregister()
    unregister()  # idempotent
    async with store.subscribe("feed") as sub:
        await store.send("feed", "x")
        assert kinds(await sub.receive_batch()) == [(None, "x")]
    store.provide_snapshot("feed", provider({"feed": "s"}))  # free to register again


async def test_store_snapshot_provider_that_fails_is_asked_again_at_the_next_read() -> None:
    store = ChannelStore()
    calls: list[str] = []

    async def flaky(channel: str) -> str:
        calls.append(channel)
        if len(calls) == 1:
            raise ConnectionError("down")
        return "s"

    store.provide_snapshot("feed", flaky)
    async with store.subscribe("feed") as sub:
        with pytest.raises(ConnectionError):
            await sub.receive_batch()
        assert kinds(await sub.receive_batch()) == [("snapshot", "s")]
    assert calls == ["feed", "feed"]


def test_store_provide_snapshot_refuses_bad_input() -> None:
    store = ChannelStore()
    with pytest.raises(TypeError):
        store.provide_snapshot("feed", "not callable")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reserved"):
        store.provide_snapshot("feed", provider({}), event="gap")
    with pytest.raises(ValueError):
        store.provide_snapshot("feed", provider({}), event="bad\nname")
    with pytest.raises(ValueError):
        store.provide_snapshot("", provider({}))
    store.provide_snapshot("feed", provider({}))
    with pytest.raises(ValueError, match="already"):
        store.provide_snapshot("feed", provider({}))
