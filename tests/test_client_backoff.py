"""Backoff, Retry-After and the default retry strategy, with an injected clock and random."""

from __future__ import annotations

import functools
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import httpx
import pytest

from sse_channels.client import (
    Backoff,
    ContentTypeError,
    StatusError,
    default_retry,
    parse_retry_after,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_backoff_defaults_are_launchdarklys() -> None:
    policy = Backoff()
    assert (policy.initial, policy.maximum, policy.multiplier) == (1.0, 30.0, 2.0)
    assert policy.reset_after == 60.0
    assert 0 < policy.jitter <= 1


def test_backoff_doubles_from_one_second_and_caps_at_thirty() -> None:
    timer = Backoff().timer(clock=FakeClock(), random=lambda: 0.0)
    assert [timer.next_delay() for _ in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]


def test_backoff_jitter_takes_off_at_most_its_fraction() -> None:
    for draw, expected in [(0.0, 8.0), (0.5, 6.0), (0.999, 4.004)]:
        timer = Backoff(jitter=0.5).timer(clock=FakeClock(), random=functools.partial(float, draw))
        delays = [timer.next_delay() for _ in range(4)]
        assert delays[3] == pytest.approx(expected)


def test_backoff_resets_only_after_a_connection_stayed_open_for_reset_after() -> None:
    clock = FakeClock()
    timer = Backoff().timer(clock=clock, random=lambda: 0.0)
    assert [timer.next_delay() for _ in range(3)] == [1, 2, 4]
    timer.connected()
    clock.now += 59.9  # open, but not long enough
    assert timer.next_delay() == 8
    timer.connected()
    clock.now += 60.0
    assert timer.next_delay() == 1  # healthy for 60 s: start over
    assert timer.next_delay() == 2  # and grow again


def test_backoff_healthy_period_counts_only_from_connected() -> None:
    clock = FakeClock()
    timer = Backoff().timer(clock=clock, random=lambda: 0.0)
    timer.next_delay()
    clock.now += 3600  # a long time without a connection is not a healthy connection
    assert timer.next_delay() == 2


def test_backoff_uses_the_servers_retry_as_base_and_cap_when_larger() -> None:
    timer = Backoff(initial=1.0, maximum=30.0).timer(clock=FakeClock(), random=lambda: 0.0)
    timer.set_base(0.25)
    assert [timer.next_delay() for _ in range(3)] == [0.25, 0.5, 1.0]
    timer = Backoff(maximum=30.0).timer(clock=FakeClock(), random=lambda: 0.0)
    timer.set_base(45.0)
    assert [timer.next_delay() for _ in range(2)] == [45.0, 45.0]


def test_backoff_retry_after_is_a_floor_after_the_jitter() -> None:
    timer = Backoff().timer(clock=FakeClock(), random=lambda: 0.9)
    assert timer.next_delay(at_least=7.0) == 7.0
    assert timer.next_delay(at_least=0.1) == pytest.approx(2 * (1 - 0.45))


def test_backoff_with_a_huge_multiplier_caps_without_overflowing() -> None:
    timer = Backoff(multiplier=1e300).timer(clock=FakeClock(), random=lambda: 0.0)
    assert [timer.next_delay() for _ in range(5)] == [1, 30, 30, 30, 30]


def test_backoff_multiplier_one_keeps_a_constant_delay() -> None:
    timer = Backoff(initial=2.0, multiplier=1.0, jitter=0).timer()
    assert {timer.next_delay() for _ in range(10)} == {2.0}


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"initial": -1}, ValueError),
        ({"initial": float("inf"), "maximum": float("inf")}, ValueError),
        ({"initial": "1"}, TypeError),
        ({"maximum": True}, TypeError),
        ({"initial": 5, "maximum": 1}, ValueError),
        ({"multiplier": 0.5}, ValueError),
        ({"multiplier": 0}, ValueError),
        ({"jitter": 1.5}, ValueError),
        ({"jitter": -0.1}, ValueError),
        ({"reset_after": float("nan")}, ValueError),
    ],
)
def test_backoff_rejects_bad_options_at_the_call(
    options: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        Backoff(**options)  # type: ignore[arg-type]


def test_parse_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 3 ") == 3.0
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(later, now) == 90.0
    earlier = format_datetime(now - timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(earlier, now) == 0.0
    assert parse_retry_after("Thu, 02 Jan 2025 03:04:35 GMT", now) == 30.0


FULLWIDTH_12 = "\uff11\uff12"


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5", FULLWIDTH_12, "Mon, 99 Foo 2025"])
def test_parse_retry_after_ignores_malformed_values(value: str | None) -> None:
    assert parse_retry_after(value) is None


@pytest.mark.parametrize(
    ("status", "retried"),
    [
        (401, False),
        (403, False),
        (404, False),
        (400, False),
        (410, False),
        (301, False),
        (201, False),
        (408, True),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
    ],
)
def test_default_retry_by_status(status: int, retried: bool) -> None:
    assert default_retry(StatusError(status, {}), 1) is retried


def test_default_retry_retries_network_errors_but_not_other_failures() -> None:
    request = httpx.Request("GET", "http://127.0.0.1/")
    for error in (
        httpx.ConnectError("refused", request=request),
        httpx.ReadTimeout("slow", request=request),
        httpx.RemoteProtocolError("cut", request=request),
        httpx.ReadError("reset", request=request),
    ):
        assert default_retry(error, 100) is True
    assert default_retry(ContentTypeError("text/html"), 1) is False
    assert default_retry(httpx.DecodingError("bad gzip", request=request), 1) is False
    assert default_retry(ValueError("bug"), 1) is False
