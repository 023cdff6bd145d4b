"""One response body parsed with the project's own decoder, carrying state across reconnects."""

from __future__ import annotations

from typing import TYPE_CHECKING, final

from .._decode import SSEDecoder

if TYPE_CHECKING:
    from .._event import Event

__all__ = ["ResponseParser"]

_BOM = b"\xef\xbb\xbf"


@final
class ResponseParser:
    """Decode one response's body, as a browser does after a reconnection.

    A browser keeps its last event id across connections: an event on the new connection
    without an ``id`` line reports the previous id, and a block with only ``id:`` still
    moves it. ``SSEDecoder`` starts each stream from an empty id, so it is first fed an
    id-only block with the id this client already has (which dispatches nothing), and
    the one leading BOM the standard allows is stripped here instead, since the decoder
    only strips one at the very start of what it was fed.
    """

    __slots__ = ("_decoder", "_head")

    def __init__(self, last_event_id: str) -> None:
        self._decoder = SSEDecoder()
        self._decoder.feed(f"id: {last_event_id}\n\n")
        #: The first bytes of the body, held until it is known whether they are a BOM.
        self._head: bytes | None = b""

    @property
    def last_event_id(self) -> str:
        """The id a reconnection sends as ``Last-Event-ID`` (``""``: none)."""
        return self._decoder.last_event_id

    @property
    def retry(self) -> int | None:
        """The latest ``retry:`` of this response, in milliseconds, or ``None``."""
        return self._decoder.retry

    def feed(self, chunk: bytes) -> list[Event]:
        """The events ``chunk`` completes; comments (heartbeats) are dropped."""
        if self._head is not None:
            head = self._head + chunk
            if len(head) < len(_BOM) and _BOM.startswith(head):
                self._head = head
                return []
            self._head = None
            chunk = head[len(_BOM) :] if head.startswith(_BOM) else head
        events = self._decoder.feed(chunk)
        # Kept by the decoder for tests; over a long stream of heartbeats they would pile up.
        self._decoder.comments.clear()
        return events
