"""Encode a few events, decode them back, and print the wire format."""

from __future__ import annotations

from sse_channels import SSEDecoder, format_sse


def main() -> None:
    stream = b"".join(
        [
            format_sse(comment="connected"),
            format_sse({"user": "alice", "status": "online"}, event="presence", id="1"),
            format_sse("two\nlines", id="2"),
            format_sse(" leading space survives", id="3", retry=5000),
        ]
    )
    print("--- on the wire ---")
    print(stream.decode())
    print("--- what EventSource sees ---")
    decoder = SSEDecoder()
    for event in decoder.feed(stream):
        print(event)
    print("Last-Event-ID on reconnect:", decoder.last_event_id)


if __name__ == "__main__":
    main()
