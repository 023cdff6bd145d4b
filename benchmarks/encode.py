"""Encode the same events with sse-channels and its peers; print events/s as a markdown table.

Run from a clone with the peers installed::

    .venv/bin/python -m pip install -e ".[bench]"
    .venv/bin/python benchmarks/encode.py [--events N] [--rounds R]

Every encoder gets the same input: a pre-serialised ~100-byte JSON string, a fixed event
type, and an id that changes per event (``str(i)``, built before timing). Before timing,
each encoder's bytes are decoded with ``sse_channels.parse_sse`` and must give back the same
(data, event, id), so nothing wrong is compared. Encoders run in interleaved rounds (the order
rotates each round, so machine noise spreads evenly); the table shows the median. The garbage
collector is off while a round runs, as in ``timeit``. A peer that is not installed is
skipped with a note. Nothing is written to disk: the table goes to stdout.
"""

from __future__ import annotations

import os
import sys

# Run as ``python benchmarks/<name>.py``, this directory comes first on sys.path, where
# http.py and redis.py would shadow the packages of those names that the peers import.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata

from sse_channels import format_sse, parse_sse

EVENT = "update"
PAYLOAD = json.dumps(
    {
        "user": "alice",
        "action": "price-change",
        "item": {"sku": "A-1042", "price": 19.99, "qty": 3},
        "tags": ["sale", "eu"],
    },
    separators=(",", ":"),
)

#: One timed run: encode one event per id, with PAYLOAD and EVENT.
Loop = Callable[[list[str]], None]
#: One call of the encoder, for the correctness check: (data, event, id) -> bytes.
Encode = Callable[[str, str, str], bytes]


@dataclass
class Encoder:
    name: str
    loop: Loop
    encode: Encode


# --- the encoders ----------------------------------------------------------------------------
# Each loop is written out by hand, calling its encoder the way an application would, so that
# no adapter layer is timed. Loop overhead (one for-loop, locals) is identical for all.


def sse_channels_encoder() -> Encoder:
    def loop(ids: list[str]) -> None:
        data, event, fmt = PAYLOAD, EVENT, format_sse
        for i in ids:
            fmt(data, event=event, id=i)

    def encode(data: str, event: str, id: str) -> bytes:
        return format_sse(data, event=event, id=id)

    return Encoder("sse-channels `format_sse()`", loop, encode)


def fstring(data: str, event: str, id: str) -> bytes:
    """The floor: no validation, no line splitting. Not safe for arbitrary input."""
    return f"event: {event}\nid: {id}\ndata: {data}\n\n".encode()


def fstring_encoder() -> Encoder:
    def loop(ids: list[str]) -> None:
        data, event, fmt = PAYLOAD, EVENT, fstring
        for i in ids:
            fmt(data, event, i)

    return Encoder("hand-written f-string (no checks)", loop, fstring)


def sse_starlette_encoder() -> Encoder:
    from sse_starlette.event import ServerSentEvent

    def loop(ids: list[str]) -> None:
        data, event, sse = PAYLOAD, EVENT, ServerSentEvent
        for i in ids:
            sse(data=data, event=event, id=i).encode()

    def encode(data: str, event: str, id: str) -> bytes:
        out: bytes = ServerSentEvent(data=data, event=event, id=id).encode()
        return out

    return Encoder(
        f"sse-starlette {_version('sse-starlette')} `ServerSentEvent.encode()`", loop, encode
    )


def fastapi_encoders() -> list[Encoder]:
    from fastapi.sse import ServerSentEvent, format_sse_event

    def serialize_sse_item(item: object) -> bytes:
        # The raw_data path of fastapi.routing's _serialize_sse_item, which FastAPI calls on
        # every item a path operation yields with response_class=EventSourceResponse.
        if isinstance(item, ServerSentEvent) and item.raw_data is not None:
            out: bytes = format_sse_event(
                data_str=item.raw_data,
                event=item.event,
                id=item.id,
                retry=item.retry,
                comment=item.comment,
            )
            return out
        raise AssertionError("benchmark only covers ServerSentEvent(raw_data=...)")

    def model_loop(ids: list[str]) -> None:
        data, event, sse, ser = PAYLOAD, EVENT, ServerSentEvent, serialize_sse_item
        for i in ids:
            ser(sse(raw_data=data, event=event, id=i))

    def model_encode(data: str, event: str, id: str) -> bytes:
        return serialize_sse_item(ServerSentEvent(raw_data=data, event=event, id=id))

    def bare_loop(ids: list[str]) -> None:
        data, event, fmt = PAYLOAD, EVENT, format_sse_event
        for i in ids:
            fmt(data_str=data, event=event, id=i, retry=None, comment=None)

    def bare_encode(data: str, event: str, id: str) -> bytes:
        out: bytes = format_sse_event(data_str=data, event=event, id=id)
        return out

    version = _version("fastapi")
    return [
        Encoder(
            f"FastAPI {version} (`ServerSentEvent` + `format_sse_event`)", model_loop, model_encode
        ),
        Encoder(
            f"FastAPI {version} `format_sse_event` alone (extra: skips the model FastAPI builds)",
            bare_loop,
            bare_encode,
        ),
    ]


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


# --- the harness -----------------------------------------------------------------------------


def collect() -> tuple[list[Encoder], list[str]]:
    """Every encoder that can run here, and a note for each peer that cannot."""
    encoders = [sse_channels_encoder()]
    notes: list[str] = []
    peers: list[tuple[str, Callable[[], list[Encoder]]]] = [
        ("sse-starlette", lambda: [sse_starlette_encoder()]),
        ("fastapi", fastapi_encoders),
    ]
    for dist, make in peers:
        try:
            encoders.extend(make())
        except ImportError as exc:
            notes.append(f'{dist} skipped: {exc} (install with `pip install -e ".[bench]"`)')
    encoders.append(fstring_encoder())
    return encoders, notes


def check(encoders: list[Encoder]) -> None:
    """Fail before timing unless every encoder's bytes decode to the input event."""
    for id in ("0", "1", "199999"):
        for enc in encoders:
            events = parse_sse(enc.encode(PAYLOAD, EVENT, id))
            got = [(e.data, e.event, e.id) for e in events]
            if got != [(PAYLOAD, EVENT, id)]:
                raise SystemExit(f"{enc.name} encodes wrongly: parse_sse gives {got!r}")


def time_once(loop: Loop, ids: list[str]) -> float:
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        loop(ids)
        return time.perf_counter() - start
    finally:
        if gc_was_enabled:
            gc.enable()


def measure(encoders: list[Encoder], events: int, rounds: int) -> dict[str, list[float]]:
    """Events/s of each encoder in each round; the order rotates every round."""
    ids = [str(i) for i in range(events)]
    warmup = ids[: min(events, 10_000)]
    for enc in encoders:
        enc.loop(warmup)
    rates: dict[str, list[float]] = {enc.name: [] for enc in encoders}
    for r in range(rounds):
        shift = r % len(encoders)
        for enc in encoders[shift:] + encoders[:shift]:
            rates[enc.name].append(events / time_once(enc.loop, ids))
    return rates


def table(encoders: list[Encoder], rates: dict[str, list[float]]) -> str:
    ours = statistics.median(rates[encoders[0].name])
    rows = [
        "| Encoder | events/s (median) | µs/event | spread (min-max events/s) "
        "| `format_sse` events/s ÷ this row |",
        "|---|---:|---:|---:|---:|",
    ]
    for enc in encoders:
        runs = rates[enc.name]
        med = statistics.median(runs)
        ratio = "1.00x (baseline)" if enc is encoders[0] else f"{ours / med:.2f}x"
        rows.append(
            f"| {enc.name} | {med:,.0f} | {1e6 / med:.2f} "
            f"| {min(runs):,.0f} - {max(runs):,.0f} | {ratio} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=200_000, help="events per round")
    parser.add_argument("--rounds", type=int, default=7, help="rounds; the median is reported")
    args = parser.parse_args(argv)
    if args.events < 1 or args.rounds < 1:
        parser.error("--events and --rounds must be at least 1")

    encoders, notes = collect()
    check(encoders)
    rates = measure(encoders, args.events, args.rounds)

    print(
        f"Encoding {args.events:,} events x {args.rounds} rounds "
        f"(payload {len(PAYLOAD.encode())} bytes of pre-serialised JSON, event {EVENT!r}, "
        f"id str(i)); Python {platform.python_version()} ({sys.implementation.name}), "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"sse-channels {_version('sse-channels')}."
    )
    print()
    print(table(encoders, rates))
    for note in notes:
        print(f"\nNote: {note}")


if __name__ == "__main__":
    main()
