"""sse_channels.client's public surface, and the options it refuses at the call."""

from __future__ import annotations

import httpx
import pytest

import sse_channels.client
from sse_channels.client import Backoff, EventSource, SyncEventSource

CLIENT_EXPECTED = {
    "DEFAULT_TIMEOUT",
    "Backoff",
    "BackoffTimer",
    "ClientError",
    "ConnectionState",
    "ContentTypeError",
    "EventSource",
    "Gap",
    "Reconnect",
    "RetryStrategy",
    "StateChange",
    "StatusError",
    "SyncEventSource",
    "default_retry",
    "parse_retry_after",
}


def test_client_module_exports_a_sorted_curated_surface() -> None:
    names = sse_channels.client.__all__
    assert set(names) == CLIENT_EXPECTED
    # Sorted as ruff's RUF022 does: constants, then classes, then functions.
    order = sorted(names, key=lambda n: (0 if n.isupper() else 1 if n[0].isupper() else 2, n))
    assert names == order
    for name in names:
        obj = getattr(sse_channels.client, name)
        if isinstance(obj, type) or callable(obj):
            assert obj.__module__ == "sse_channels.client", name


def test_client_errors_derive_from_the_packages_base_error() -> None:
    from sse_channels import SSEChannelsError
    from sse_channels.client import ClientError, ContentTypeError, StatusError

    assert issubclass(ClientError, SSEChannelsError)
    assert issubclass(StatusError, ClientError)
    assert issubclass(ContentTypeError, ClientError)


@pytest.mark.parametrize("source_class", [EventSource, SyncEventSource])
@pytest.mark.parametrize(
    ("url", "options", "error"),
    [
        ("ftp://example.com/", {}, ValueError),
        ("/events", {}, ValueError),
        (b"http://x/", {}, TypeError),
        ("http://127.0.0.1/", {"last_event_id": "a\nb"}, ValueError),
        ("http://127.0.0.1/", {"last_event_id": "nul\0"}, ValueError),
        ("http://127.0.0.1/", {"last_event_id": 5}, TypeError),
        ("http://127.0.0.1/", {"backoff": 1.0}, TypeError),
        ("http://127.0.0.1/", {"retry": True}, TypeError),
        ("http://127.0.0.1/", {"refresh": "token"}, TypeError),
        ("http://127.0.0.1/", {"on_state": 1}, TypeError),
    ],
)
def test_client_rejects_bad_arguments_at_the_call(
    source_class: type[EventSource] | type[SyncEventSource],
    url: object,
    options: dict[str, object],
    error: type[Exception],
) -> None:
    with pytest.raises(error):
        source_class(url, **options)  # type: ignore[arg-type]


def test_client_rejects_the_wrong_kind_of_httpx_client_and_refresh_hook() -> None:
    with httpx.Client() as sync_client, pytest.raises(TypeError):
        EventSource("http://127.0.0.1/", client=sync_client)  # type: ignore[arg-type]

    async def refresh(request: object) -> None:
        pass

    with pytest.raises(TypeError):
        SyncEventSource("http://127.0.0.1/", refresh=refresh)  # type: ignore[arg-type]


def test_a_source_that_was_never_read_starts_closed_with_no_id() -> None:
    source = SyncEventSource("http://127.0.0.1/", backoff=Backoff(), last_event_id="5")
    assert source.state.value == "closed"
    assert source.last_event_id == "5"
    assert source.retry is None
    assert source.connections == 0
    source.close()
    assert list(source) == []
