"""Fan one publisher's events out to many subscribers with sse-channels and its peers.

Run from a clone with the peers installed::

    .venv/bin/python -m pip install -e ".[bench]"
    .venv/bin/python benchmarks/fanout.py [--subscribers N] [--events E] [--rounds R] [--quick]

One publisher task sends numbered events to one channel; N subscriber tasks each iterate
their subscription with the library's own API and check every event: the sequence number
at the start of each payload must be exactly the next one expected, and each subscriber
must get all of them. A trial where anything is lost, repeated or out of order is reported
as FAILED and not timed. The libraries:

- sse-channels: ``ChannelStore()``, ``async with store.subscribe(ch) as sub: async for
  event in sub``, ``await store.send(ch, data)``;
- broadcaster: ``Broadcast("memory://")``, ``async with broadcast.subscribe(ch) as sub:
  async for event in sub``, ``await broadcast.publish(ch, data)``;
- Litestar's channels plugin with ``MemoryChannelsBackend``, driven without an HTTP server:
  ``async with plugin`` (starts its publish and fan-out tasks), ``async with
  plugin.start_subscription(ch) as sub: async for data in sub.iter_events()``,
  ``plugin.publish(data, ch)``. Its per-subscriber backlog is left unbounded (the default,
  ``subscriber_max_backlog=None``), so it never drops an event;
- a baseline: one unbounded ``asyncio.Queue`` per subscriber, the publisher calling
  ``put_nowait`` on each;
- an extra sse-channels row that reads with ``await sub.receive_batch()``, a batch per
  wake-up, as an SSE response does. It is shown for information; no target uses it.

Scenarios, run in interleaved rounds (the library order rotates every round) on plain
asyncio, each trial in a fresh event loop, with the garbage collector off while it runs
(``--gc`` leaves it on):

1. N subscribers, the publisher yielding to the loop after every send: deliveries/s;
2. N subscribers, bursts of 100 sends between yields: deliveries/s;
3. one burst of 1,000 events to 10,000 idle subscribers and to 10: the publisher's own time
   until its last send returns, and the time until every subscriber has every event;
4. memory per idle subscriber, its parked task included (tracemalloc, 10,000 subscribers).

Medians go to stdout as markdown tables, with a PASS/FAIL line per target. Nothing is
written to disk.
"""

from __future__ import annotations

import os
import sys

# Run as ``python benchmarks/<name>.py``, this directory comes first on sys.path, where
# http.py and redis.py would shadow the packages of those names that the peers import.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, cast

from sse_channels import ChannelStore

CHANNEL = "bench"
#: Events per burst in scenario 2.
BURST = 100
#: The JSON-ish body after the 8-digit sequence number; every payload is 101 bytes.
FILLER = (
    ' {"user":"alice","action":"price-change","item":{"sku":"A-1042","price":19.99},"tags":["eu"]}'
)


def payloads(count: int) -> list[str]:
    """``count`` payloads, each starting with its 8-digit sequence number (0, 1, 2, ...)."""
    return [f"{i:08d}{FILLER}" for i in range(count)]


@dataclass
class Trial:
    """What the subscribers of one trial share: readiness, completion, and failures."""

    subscribers: int
    events: int
    ready: int = 0
    done: int = 0
    all_ready: asyncio.Event = field(default_factory=asyncio.Event)
    all_done: asyncio.Event = field(default_factory=asyncio.Event)
    errors: list[str] = field(default_factory=list)
    #: Events each subscriber had checked when it stopped (only filled in on failure).
    got: list[int] = field(default_factory=list)

    def subscribed(self) -> None:
        self.ready += 1
        if self.ready == self.subscribers:
            self.all_ready.set()

    def finished(self, checked: int) -> None:
        if checked != self.events:  # it ended early (an error, or cancelled at teardown)
            self.got.append(checked)
            self.all_done.set()  # end the trial now: it has failed
            return
        self.done += 1
        if self.done == self.subscribers:
            self.all_done.set()

    def wrong(self, expected: int, seq: int) -> None:
        if len(self.errors) < 5:
            self.errors.append(f"expected event {expected}, got {seq}")
        self.all_done.set()  # end the trial now: it has failed


# --- the libraries ----------------------------------------------------------------------------
# Each library has a hand-written subscriber loop and publisher loop, using its own API the
# way an application would, so that no adapter layer is timed. The checking code (parse the
# sequence number, compare, count) is identical in all of them.

#: Run ``subscribers`` subscriber tasks and the publisher inside the library's lifespan.
Runner = Callable[["Plan"], Coroutine[Any, Any, "Outcome"]]


@dataclass
class Plan:
    subscribers: int
    payloads: list[str]
    #: Sends between two yields to the event loop.
    burst: int
    timeout: float
    #: Only set up the subscribers and measure their memory; send nothing.
    memory_only: bool = False


@dataclass
class Outcome:
    #: Seconds from the first send until the last subscriber checked the last event.
    elapsed: float = 0.0
    #: Seconds the publisher spent inside its own send calls (the yields not counted).
    publisher: float = 0.0
    #: CPU seconds of this process over ``elapsed``: steadier than ``elapsed`` when other
    #: work shares the machine (time spent descheduled is not counted).
    cpu: float = 0.0
    #: Bytes traced per idle subscriber (memory-only plans).
    per_subscriber: float = 0.0
    failure: str | None = None


async def ours_subscriber(store: ChannelStore, trial: Trial) -> None:
    checked = 0
    total = trial.events
    try:
        async with store.subscribe(CHANNEL) as subscription:
            trial.subscribed()
            async for event in subscription:
                seq = int(event.data[:8])
                if seq != checked:
                    trial.wrong(checked, seq)
                    return
                checked += 1
                if checked == total:
                    return
    finally:
        trial.finished(checked)


async def ours_publish(store: ChannelStore, items: Sequence[str], burst: int) -> float:
    send, clock, spent = store.send, time.perf_counter, 0.0
    for start in range(0, len(items), burst):
        began = clock()
        for item in items[start : start + burst]:
            await send(CHANNEL, item)
        spent += clock() - began
        await asyncio.sleep(0)
    return spent


async def ours_batch_subscriber(store: ChannelStore, trial: Trial) -> None:
    """The way an SSE response drains a subscription: a batch per wake-up, one write each."""
    checked = 0
    total = trial.events
    try:
        async with store.subscribe(CHANNEL) as subscription:
            trial.subscribed()
            receive_batch = subscription.receive_batch
            while checked < total:
                for event in await receive_batch():
                    seq = int(event.data[:8])
                    if seq != checked:
                        trial.wrong(checked, seq)
                        return
                    checked += 1
    finally:
        trial.finished(checked)


def ours_runner(subscriber: Callable[[ChannelStore, Trial], Coroutine[Any, Any, None]]) -> Runner:
    async def run(plan: Plan) -> Outcome:
        store = ChannelStore()
        if len(plan.payloads) > 1000:  # keep every event of a large burst in the history
            store.configure_channel(CHANNEL, history=len(plan.payloads))
        async with store:
            return await drive(
                plan,
                lambda trial: subscriber(store, trial),
                lambda: ours_publish(store, plan.payloads, plan.burst),
            )

    return run


async def queue_subscriber(hub: QueueHub, trial: Trial) -> None:
    checked = 0
    total = trial.events
    try:
        with hub.subscribe() as queue:
            trial.subscribed()
            get = queue.get
            while checked < total:
                item = await get()
                seq = int(item[:8])
                if seq != checked:
                    trial.wrong(checked, seq)
                    return
                checked += 1
    finally:
        trial.finished(checked)


class QueueHub:
    """The baseline: an unbounded ``asyncio.Queue`` per subscriber, filled by the publisher."""

    def __init__(self) -> None:
        self.queues: dict[asyncio.Queue[str], None] = {}

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[str]]:
        queue: asyncio.Queue[str] = asyncio.Queue()
        self.queues[queue] = None
        try:
            yield queue
        finally:
            del self.queues[queue]

    def publish(self, item: str) -> None:
        for queue in self.queues:
            queue.put_nowait(item)


async def queue_publish(hub: QueueHub, items: Sequence[str], burst: int) -> float:
    publish, clock, spent = hub.publish, time.perf_counter, 0.0
    for start in range(0, len(items), burst):
        began = clock()
        for item in items[start : start + burst]:
            publish(item)
        spent += clock() - began
        await asyncio.sleep(0)
    return spent


async def run_queue(plan: Plan) -> Outcome:
    hub = QueueHub()
    return await drive(
        plan,
        lambda trial: queue_subscriber(hub, trial),
        lambda: queue_publish(hub, plan.payloads, plan.burst),
    )


async def run_broadcaster(plan: Plan) -> Outcome:
    from broadcaster import Broadcast

    async def subscriber(broadcast: Broadcast, trial: Trial) -> None:
        checked = 0
        total = trial.events
        try:
            async with broadcast.subscribe(CHANNEL) as subscription:
                trial.subscribed()
                # broadcaster annotates __aiter__ as returning an optional generator.
                events = cast("AsyncGenerator[Any, None]", subscription.__aiter__())
                async with contextlib.aclosing(events):
                    async for event in events:
                        seq = int(event.message[:8])
                        if seq != checked:
                            trial.wrong(checked, seq)
                            return
                        checked += 1
                        if checked == total:
                            return
        finally:
            trial.finished(checked)

    async def publish(broadcast: Broadcast, items: Sequence[str], burst: int) -> float:
        send, clock, spent = broadcast.publish, time.perf_counter, 0.0
        for start in range(0, len(items), burst):
            began = clock()
            for item in items[start : start + burst]:
                await send(CHANNEL, item)
            spent += clock() - began
            await asyncio.sleep(0)
        return spent

    async with Broadcast("memory://") as broadcast:
        return await drive(
            plan,
            lambda trial: subscriber(broadcast, trial),
            lambda: publish(broadcast, plan.payloads, plan.burst),
        )


async def run_litestar(plan: Plan) -> Outcome:
    from litestar.channels import ChannelsPlugin
    from litestar.channels.backends.memory import MemoryChannelsBackend

    async def subscriber(plugin: ChannelsPlugin, trial: Trial) -> None:
        checked = 0
        total = trial.events
        try:
            async with plugin.start_subscription(CHANNEL) as subscription:
                trial.subscribed()
                async with contextlib.aclosing(subscription.iter_events()) as events:
                    async for data in events:
                        seq = int(data[:8])
                        if seq != checked:
                            trial.wrong(checked, seq)
                            return
                        checked += 1
                        if checked == total:
                            return
        finally:
            trial.finished(checked)

    async def publish(plugin: ChannelsPlugin, items: Sequence[str], burst: int) -> float:
        send, clock, spent = plugin.publish, time.perf_counter, 0.0
        for start in range(0, len(items), burst):
            began = clock()
            for item in items[start : start + burst]:
                send(item, CHANNEL)
            spent += clock() - began
            await asyncio.sleep(0)
        return spent

    # subscriber_max_backlog=None (the default): unbounded, so nothing is dropped silently.
    plugin = ChannelsPlugin(
        backend=MemoryChannelsBackend(), channels=[CHANNEL], subscriber_max_backlog=None
    )
    async with plugin:
        return await drive(
            plan,
            lambda trial: subscriber(plugin, trial),
            lambda: publish(plugin, plan.payloads, plan.burst),
        )


async def drive(
    plan: Plan,
    subscriber: Callable[[Trial], Coroutine[Any, Any, None]],
    publish: Callable[[], Awaitable[float]],
) -> Outcome:
    """Start the subscribers, wait until all are parked, publish, wait until all are done.

    Every subscriber task is owned here: whatever happens, the leftovers are cancelled and
    awaited before this returns.
    """
    # A memory-only trial expects one event and sends none: every subscriber stays parked.
    events = 1 if plan.memory_only else len(plan.payloads)
    trial = Trial(plan.subscribers, events)
    loop = asyncio.get_running_loop()
    tracing = plan.memory_only
    if tracing:
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
    tasks = [loop.create_task(subscriber(trial)) for _ in range(plan.subscribers)]
    outcome = Outcome()
    try:
        await asyncio.wait_for(trial.all_ready.wait(), plan.timeout)
        for _ in range(3):  # let every subscriber reach its waiting point
            await asyncio.sleep(0)
        if tracing:
            gc.collect()
            outcome.per_subscriber = (tracemalloc.get_traced_memory()[0] - before) / len(tasks)
            tracemalloc.stop()
            tracing = False
            return outcome
        began, cpu = time.perf_counter(), time.process_time()
        outcome.publisher = await publish()
        with contextlib.suppress(asyncio.TimeoutError):  # a failure, reported below
            await asyncio.wait_for(trial.all_done.wait(), plan.timeout)
        outcome.elapsed = time.perf_counter() - began
        outcome.cpu = time.process_time() - cpu
    finally:
        if tracing:
            tracemalloc.stop()
        for task in tasks:
            task.cancel()
        ended = await asyncio.gather(*tasks, return_exceptions=True)
    raised = {
        repr(exc)
        for exc in ended
        if isinstance(exc, BaseException) and not isinstance(exc, asyncio.CancelledError)
    }
    if trial.errors:
        outcome.failure = "out of order or repeated: " + "; ".join(trial.errors)
    elif trial.done != plan.subscribers:
        short = sorted(trial.got)[:3]
        outcome.failure = (
            f"lost events: {plan.subscribers - trial.done} of {plan.subscribers} subscribers "
            f"incomplete (fewest checked: {short} of {events}; timeout {plan.timeout:g} s)"
        )
        if raised:
            outcome.failure += "; raised: " + ", ".join(sorted(raised)[:3])
    return outcome


@dataclass
class Library:
    key: str
    name: str
    run: Runner


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def collect() -> tuple[list[Library], list[str]]:
    """Every library that can run here (ours first), and a note for each peer that cannot."""
    ours = f"sse-channels {_version('sse-channels')}"
    libraries = [Library("ours", ours, ours_runner(ours_subscriber))]
    notes: list[str] = []
    peers = [
        ("broadcaster", "broadcaster", "broadcaster (memory://)", run_broadcaster),
        ("litestar", "litestar", "Litestar channels (memory)", run_litestar),
    ]
    for key, dist, label, run in peers:
        try:
            __import__(key)
        except ImportError as exc:
            notes.append(f'{dist} skipped: {exc} (install with `pip install -e ".[bench]"`)')
            continue
        libraries.append(Library(key, f"{label} {_version(dist)}", run))
    libraries.append(Library("queue", "asyncio.Queue per subscriber (baseline)", run_queue))
    libraries.append(
        Library(
            "ours_batch",
            f"{ours} `receive_batch()` (extra: not a target row)",
            ours_runner(ours_batch_subscriber),
        )
    )
    return libraries, notes


# --- the harness ------------------------------------------------------------------------------


@dataclass
class Results:
    """Per scenario, per library key: one value per round, or the first failure."""

    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    failures: dict[str, dict[str, str]] = field(default_factory=dict)

    def add(self, scenario: str, key: str, value: float) -> None:
        self.values.setdefault(scenario, {}).setdefault(key, []).append(value)

    def fail(self, scenario: str, key: str, why: str) -> None:
        self.failures.setdefault(scenario, {}).setdefault(key, why)

    def median(self, scenario: str, key: str) -> float | None:
        if key in self.failures.get(scenario, {}):
            return None
        runs = self.values.get(scenario, {}).get(key)
        return statistics.median(runs) if runs else None

    def spread(self, scenario: str, key: str) -> tuple[float, float]:
        runs = self.values[scenario][key]
        return min(runs), max(runs)


def trial(library: Library, plan: Plan, *, collect_garbage: bool = False) -> Outcome:
    """One trial in a fresh event loop; the garbage collector is off while it runs, unless
    ``collect_garbage`` is set."""
    gc.collect()
    if not collect_garbage:
        gc.disable()
    try:
        return asyncio.run(library.run(plan))
    finally:
        gc.enable()


def measure(libraries: list[Library], args: argparse.Namespace) -> Results:
    results = Results()
    stream = payloads(args.events)
    burst = payloads(args.burst)
    plans: list[tuple[str, Plan, bool]] = [
        ("yield", Plan(args.subscribers, stream, 1, args.timeout), True),
        ("burst", Plan(args.subscribers, stream, BURST, args.timeout), True),
        ("idle_few", Plan(args.few, burst, len(burst), args.timeout), True),
        ("idle_many", Plan(args.idle, burst, len(burst), args.timeout), True),
        ("memory", Plan(args.idle, [], 1, args.timeout, memory_only=True), False),
    ]
    warm = Plan(min(args.subscribers, 100), stream[:200], 10, args.timeout)
    for library in libraries:
        trial(library, warm)
    for r in range(args.rounds):
        shift = r % len(libraries)
        order = libraries[shift:] + libraries[:shift]
        for scenario, plan, timed in plans:
            if scenario == "memory" and r >= args.memory_rounds:
                continue
            for library in order:
                if library.key in results.failures.get(scenario, {}):
                    continue
                outcome = trial(library, plan, collect_garbage=args.gc)
                if outcome.failure is not None:
                    results.fail(scenario, library.key, outcome.failure)
                    continue
                if not timed:
                    results.add(scenario, library.key, outcome.per_subscriber)
                    continue
                deliveries = plan.subscribers * len(plan.payloads)
                results.add(scenario, library.key, deliveries / outcome.elapsed)
                results.add(scenario + "_publisher", library.key, outcome.publisher)
                results.add(scenario + "_elapsed", library.key, outcome.elapsed)
                results.add(scenario + "_cpu", library.key, outcome.cpu / deliveries)
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    return results


# --- the report -------------------------------------------------------------------------------


@dataclass
class Target:
    scenario: str
    peer: str
    factor: float


def _fmt_rate(value: float | None) -> str:
    return "FAILED" if value is None else f"{value:,.0f}"


def rate_table(libraries: list[Library], results: Results, scenario: str) -> list[str]:
    ours = results.median(scenario, "ours")
    rows = [
        "| Library | deliveries/s (median) | spread (min-max) | sse-channels ÷ this row |",
        "|---|---:|---:|---:|",
    ]
    for library in libraries:
        med = results.median(scenario, library.key)
        if med is None:
            why = results.failures.get(scenario, {}).get(library.key, "no result")
            rows.append(f"| {library.name} | FAILED | {why} | - |")
            continue
        low, high = results.spread(scenario, library.key)
        if library.key == "ours":
            ratio = "1.00x"
        else:
            ratio = "-" if ours is None else f"{ours / med:.2f}x"
        rows.append(f"| {library.name} | {med:,.0f} | {low:,.0f} - {high:,.0f} | {ratio} |")
    return rows


def check_rate_targets(
    libraries: list[Library], results: Results, targets: list[Target]
) -> tuple[list[str], bool]:
    lines: list[str] = []
    ok = True
    names = {library.key: library.name for library in libraries}
    for target in targets:
        if target.peer not in names:
            lines.append(f"- SKIPPED: vs {target.peer} (not installed, or left out by --only)")
            continue
        ours = results.median(target.scenario, "ours")
        peer = results.median(target.scenario, target.peer)
        label = f"sse-channels >= {target.factor:g}x {names[target.peer]}"
        if ours is None or peer is None:
            lines.append(f"- FAIL: {label}: a run FAILED")
            ok = False
            continue
        ratio = ours / peer
        verdict = "PASS" if ratio >= target.factor else "FAIL"
        ok = ok and verdict == "PASS"
        lines.append(f"- {verdict}: {label}: {ratio:.2f}x")
    return lines, ok


def idle_table(libraries: list[Library], results: Results, few: int, many: int) -> list[str]:
    rows = [
        f"| Library | publisher ms, {few:,} subs | publisher ms, {many:,} subs "
        f"| {many:,} ÷ {few:,} | all delivered ms, {few:,} subs "
        f"| all delivered ms, {many:,} subs |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for library in libraries:
        cells = []
        for scenario in ("idle_few_publisher", "idle_many_publisher"):
            base = scenario.removesuffix("_publisher")
            med = results.median(scenario, library.key)
            failed = library.key in results.failures.get(base, {})
            cells.append(None if failed else med)
        deliver = []
        for scenario in ("idle_few_elapsed", "idle_many_elapsed"):
            base = scenario.removesuffix("_elapsed")
            failed = library.key in results.failures.get(base, {})
            deliver.append(None if failed else results.median(scenario, library.key))
        few_ms, many_ms = cells
        ratio = "-" if few_ms is None or many_ms is None else f"{many_ms / few_ms:.2f}x"
        rows.append(
            f"| {library.name} | {_ms(few_ms)} | {_ms(many_ms)} | {ratio} "
            f"| {_ms(deliver[0])} | {_ms(deliver[1])} |"
        )
    return rows


def _ms(seconds: float | None) -> str:
    return "FAILED" if seconds is None else f"{seconds * 1e3:,.2f}"


def memory_table(libraries: list[Library], results: Results) -> list[str]:
    rows = ["| Library | KiB per idle subscriber (task included) |", "|---|---:|"]
    for library in libraries:
        med = results.median("memory", library.key)
        rows.append(f"| {library.name} | {'FAILED' if med is None else f'{med / 1024:.2f}'} |")
    return rows


def report(
    libraries: list[Library], results: Results, args: argparse.Namespace, notes: list[str]
) -> bool:
    out: list[str] = []
    out.append(
        f"Fan-out: {args.rounds} interleaved rounds, medians; Python "
        f"{platform.python_version()} ({sys.implementation.name}), plain asyncio, "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs; payload "
        f"{len(FILLER) + 8} bytes; garbage collector {'on' if args.gc else 'off'} in trials."
    )
    ok = True
    n, e = args.subscribers, args.events
    out += [
        "",
        f"### 1. {n:,} subscribers, the publisher yields after every send "
        f"({e:,} events, {n * e:,} deliveries)",
        "",
    ]
    out += rate_table(libraries, results, "yield")
    lines, passed = check_rate_targets(
        libraries,
        results,
        [
            Target("yield", "broadcaster", 1.5),
            Target("yield", "queue", 1.2),
            Target("yield", "litestar", 1.2),
        ],
    )
    out += ["", *lines]
    ok = ok and passed
    out += [
        "",
        f"### 2. {n:,} subscribers, bursts of {BURST} sends between yields "
        f"({e:,} events, {n * e:,} deliveries)",
        "",
    ]
    out += rate_table(libraries, results, "burst")
    lines, passed = check_rate_targets(
        libraries,
        results,
        [Target("burst", "broadcaster", 3.0), Target("burst", "litestar", 2.5)],
    )
    out += ["", *lines]
    ok = ok and passed
    out += [
        "",
        f"### 3. One burst of {args.burst:,} events to {args.idle:,} idle subscribers "
        f"vs {args.few:,}",
        "",
    ]
    out += idle_table(libraries, results, args.few, args.idle)
    few = results.median("idle_few_publisher", "ours")
    many = results.median("idle_many_publisher", "ours")
    failed = "ours" in results.failures.get("idle_few", {}) or "ours" in results.failures.get(
        "idle_many", {}
    )
    if few is None or many is None or failed:
        out += ["", f"- FAIL: sse-channels publisher time, {args.idle:,} ÷ {args.few:,}: FAILED"]
        ok = False
    else:
        verdict = "PASS" if many / few <= 3 else "FAIL"
        ok = ok and verdict == "PASS"
        out += [
            "",
            f"- {verdict}: sse-channels publisher time, {args.idle:,} subscribers <= 3x "
            f"{args.few:,}: {many / few:.2f}x",
        ]
    out += [
        "",
        f"### 4. Memory per idle subscriber ({args.idle:,} subscribers, each with a task "
        "parked in its iterator; tracemalloc)",
        "",
    ]
    out += memory_table(libraries, results)
    mem = results.median("memory", "ours")
    verdict = "PASS" if mem is not None and mem <= 4096 else "FAIL"
    ok = ok and verdict == "PASS"
    shown = "FAILED" if mem is None else f"{mem / 1024:.2f} KiB"
    out += ["", f"- {verdict}: sse-channels <= 4 KiB per idle subscriber: {shown}"]
    if args.quick:
        notes = [*notes, "--quick is a smoke run: its samples are too small to judge the targets."]
    for note in notes:
        out += ["", f"Note: {note}"]
    print("\n".join(out))
    return ok


#: The scenarios' figures for ``--json``: results key, label, unit, scale, better.
FIGURES = [
    ("yield", "1. deliveries/s, a yield after every send", "deliveries/s", 1.0, "higher"),
    ("burst", "2. deliveries/s, bursts of 100", "deliveries/s", 1.0, "higher"),
    ("idle_few_publisher", "3. publisher ms, few subscribers", "ms", 1e3, "lower"),
    ("idle_many_publisher", "3. publisher ms, many subscribers", "ms", 1e3, "lower"),
    ("idle_few_elapsed", "3. all delivered ms, few subscribers", "ms", 1e3, "lower"),
    ("idle_many_elapsed", "3. all delivered ms, many subscribers", "ms", 1e3, "lower"),
    ("memory", "4. KiB per idle subscriber", "KiB", 1 / 1024, "lower"),
    ("yield_cpu", "1. CPU µs per delivery", "µs", 1e6, "lower"),
    ("burst_cpu", "2. CPU µs per delivery", "µs", 1e6, "lower"),
    ("idle_many_cpu", "3. CPU µs per delivery, many subscribers", "µs", 1e6, "lower"),
]
#: Short, version-free row names for ``--json`` (the same on every commit).
JSON_NAMES = {
    "ours": "sse-channels",
    "ours_batch": "sse-channels receive_batch()",
    "broadcaster": "broadcaster",
    "litestar": "Litestar channels",
    "queue": "asyncio.Queue baseline",
}


def figures(libraries: list[Library], results: Results) -> list[dict[str, Any]]:
    """Every median as a machine-readable figure (``--json``; see benchmarks/compare.py)."""
    out: list[dict[str, Any]] = []
    for library in libraries:
        for key, label, unit, scale, better in FIGURES:
            scenario = key.removesuffix("_publisher").removesuffix("_elapsed").removesuffix("_cpu")
            error = results.failures.get(scenario, {}).get(library.key)
            med = None if error else results.median(key, library.key)
            out.append(
                {
                    "name": f"{JSON_NAMES[library.key]}: {label}",
                    "value": None if med is None else med * scale,
                    "unit": unit,
                    "better": better,
                    "ours": library.key.startswith("ours"),
                    "error": error if med is None else None,
                }
            )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--subscribers", type=int, default=1000, help="N for scenarios 1-2")
    parser.add_argument("--events", type=int, default=1000, help="events in scenarios 1-2")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; medians are reported")
    parser.add_argument("--idle", type=int, default=10_000, help="subscribers, scenarios 3-4")
    parser.add_argument("--few", type=int, default=10, help="the small side of scenario 3")
    parser.add_argument("--burst", type=int, default=1000, help="events in scenario 3's burst")
    parser.add_argument(
        "--memory-rounds", type=int, default=3, help="rounds that measure memory (scenario 4)"
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a trial fails")
    parser.add_argument(
        "--gc", action="store_true", help="leave the garbage collector on during trials"
    )
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument(
        "--only", nargs="+", choices=list(JSON_NAMES), help="run only these rows (library keys)"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the medians as one JSON object instead of the tables (no targets checked)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.subscribers, args.events, args.rounds = 100, 200, 1
        args.idle, args.burst, args.memory_rounds = 1000, 100, 1
    for name in ("subscribers", "events", "rounds", "idle", "few", "burst"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")

    libraries, notes = collect()
    if args.only:
        libraries = [library for library in libraries if library.key in args.only]
    results = measure(libraries, args)
    if args.json:
        print(json.dumps({"script": "fanout", "figures": figures(libraries, results)}))
        return
    if not report(libraries, results, args, notes):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
