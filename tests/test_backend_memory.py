from __future__ import annotations

import re

import pytest

from sse_channels import Event
from sse_channels.backends import Backend, MemoryBackend
from sse_channels.testing.backend_contract import BackendContract, BackendFactory


class TestMemoryBackendContract(BackendContract):
    @pytest.fixture
    def make_backend(self) -> BackendFactory:
        return lambda history: MemoryBackend()


def attached() -> tuple[MemoryBackend, list[tuple[str, int, Event | None]]]:
    backend = MemoryBackend()
    delivered: list[tuple[str, int, Event | None]] = []
    backend.attach(lambda channel, key, event: delivered.append((channel, key, event)))
    return backend, delivered


def test_memory_backend_satisfies_the_backend_protocol() -> None:
    assert isinstance(MemoryBackend(), Backend)


@pytest.mark.anyio
async def test_memory_backend_publish_delivers_before_it_returns_with_an_id() -> None:
    backend, delivered = attached()
    draft = Event("x", event="e", channel="room")
    event = await backend.publish("room", draft)
    assert delivered == [("room", 1, event)]
    assert event.id == backend.format_id(1)
    assert event.encoded == f"id: {event.id}\n".encode() + draft.encoded
    assert backend.latest_key() == 1


@pytest.mark.anyio
async def test_memory_backend_keeps_a_caller_chosen_id() -> None:
    backend, delivered = attached()
    draft = Event("x", id="mine", channel="room")
    event = await backend.publish("room", draft)
    assert event is draft
    assert delivered == [("room", 1, draft)]


def test_memory_backend_ids_are_epoch_and_key() -> None:
    backend = MemoryBackend()
    event_id = backend.format_id(42)
    assert re.fullmatch(r"[0-9a-z]{4}-42", event_id)
    assert event_id.isascii()
    assert event_id.isprintable()


@pytest.mark.anyio
async def test_memory_backend_parses_only_its_own_ids_up_to_the_latest_key() -> None:
    backend, _ = attached()
    for _ in range(3):
        await backend.publish("room", Event("x"))
    assert [backend.parse_id(backend.format_id(key)) for key in range(4)] == [0, 1, 2, 3]
    assert backend.parse_id(backend.format_id(4)) is None  # not handed out yet
    prefix = backend.format_id(1)[:-1]
    for foreign in ("", "3", "order-1", prefix + "x", prefix + "\u0663", prefix + "-1", prefix):
        assert backend.parse_id(foreign) is None, foreign


def test_memory_backend_epochs_differ_between_instances() -> None:
    epochs = {MemoryBackend().format_id(1) for _ in range(20)}
    assert len(epochs) > 1


@pytest.mark.anyio
async def test_memory_backend_has_nothing_beyond_the_store_log() -> None:
    backend, _ = attached()
    assert backend.publish_sync("room", Event("x")) is None
    assert await backend.history("room", 0, 10) is None
    assert backend.watch("room") == 0
    assert backend.statistics() == {"backend": "memory", "connected": True}
    backend.unwatch("room")
    await backend.aclose()
