"""SSEDecoder and parse_sse(): an incremental WHATWG event-stream parser, for tests and clients.

It follows "Interpreting an event stream" of the HTML Living Standard step by step, so what it
yields is what a browser's ``EventSource`` would dispatch.
"""

from __future__ import annotations

import codecs
from typing import final

from ._event import Event, trusted_event

__all__ = ["SSEDecoder", "parse_sse"]


@final
class SSEDecoder:
    """Turn chunks of an event stream into events, exactly as a browser would.

    Feed it bytes (or text) in chunks of any size; it keeps partial lines between calls.
    Each dispatched event's ``id`` is the stream's last event id at that moment (what the
    browser reports as ``MessageEvent.lastEventId``; ``None`` when it is empty), its
    ``event`` is ``None`` for the default ``message`` type, and ``retry`` is set when the
    event's own block carried a valid ``retry`` field.

    Attributes:
        last_event_id: the id the browser would send back as ``Last-Event-ID`` ("" if none);
            an ``id`` field takes effect at the blank line that ends its block.
        retry: the latest reconnection delay the stream asked for, in ms, or ``None``.
        comments: every comment line seen, without the leading colon (heartbeats show here).
    """

    def __init__(self) -> None:
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        #: The start of a line whose end has not arrived yet, in the pieces it came in.
        self._partial: list[str] = []
        self._started = False
        self._pending_cr = False
        self._data: list[str] = []
        self._event_type = ""
        self._block_retry: int | None = None
        self._id_buffer = ""
        self.last_event_id = ""
        self.retry: int | None = None
        self.comments: list[str] = []

    def feed(self, chunk: bytes | str) -> list[Event]:
        """Consume one chunk; return the events it completed (possibly none)."""
        text = self._text.decode(chunk) if isinstance(chunk, bytes) else chunk
        if not self._started and text:
            self._started = True
            if text[0] == "\ufeff":
                text = text[1:]
        if self._pending_cr and text:
            # A CR ended the previous chunk: a LF now is the second half of that CRLF.
            self._pending_cr = False
            if text[0] == "\n":
                text = text[1:]
        if "\n" not in text and "\r" not in text:
            # No line ends in this chunk: keep it and join the pieces once the line ends,
            # so that one long line fed in many small chunks costs linear time.
            if text:
                self._partial.append(text)
            return []
        if self._partial:
            self._partial.append(text)
            buffer = "".join(self._partial)
        else:
            buffer = text
        events: list[Event] = []
        start = 0
        length = len(buffer)
        # Search again only for a terminator already passed: rescanning both from every line
        # start made a large chunk with only LF (or only CR) line ends cost quadratic time.
        cr = lf = -2
        while start < length:
            if cr != -1 and cr < start:
                cr = buffer.find("\r", start)
            if lf != -1 and lf < start:
                lf = buffer.find("\n", start)
            if cr == -1 and lf == -1:
                break
            if cr == -1 or (lf != -1 and lf < cr):
                end, after = lf, lf + 1
            elif cr + 1 < length:
                end, after = cr, cr + 2 if buffer[cr + 1] == "\n" else cr + 1
            else:  # CR is the last character: the line ends, a LF may follow in the next chunk
                end, after = cr, cr + 1
                self._pending_cr = True
            self._line(buffer[start:end], events)
            start = after
        self._partial = [buffer[start:]] if start < length else []
        return events

    def _line(self, line: str, events: list[Event]) -> None:
        if not line:
            self._dispatch(events)
            return
        colon = line.find(":")
        if colon == 0:
            self.comments.append(line[1:])
            return
        if colon == -1:
            field, value = line, ""
        else:
            field = line[:colon]
            value = line[colon + 2 :] if line.startswith(" ", colon + 1) else line[colon + 1 :]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event_type = value
        elif field == "id":
            if "\0" not in value:
                self._id_buffer = value
        elif field == "retry" and value.isascii() and value.isdigit():
            self.retry = self._block_retry = int(value)
        # Any other field is ignored, as the standard requires.

    def _dispatch(self, events: list[Event]) -> None:
        # The id takes effect at the blank line, even for a block that dispatches nothing.
        self.last_event_id = self._id_buffer
        data, event_type, retry = self._data, self._event_type, self._block_retry
        self._data, self._event_type, self._block_retry = [], "", None
        if not data:
            return
        events.append(
            trusted_event(
                "\n".join(data),
                event_type or None,
                self.last_event_id or None,
                retry,
                None,
            )
        )


def parse_sse(stream: bytes | str) -> list[Event]:
    """Decode a whole event stream at once; an unterminated final block is discarded."""
    return SSEDecoder().feed(stream)
