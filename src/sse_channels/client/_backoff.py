"""Reconnection delays: exponential backoff with jitter that resets after a healthy connection."""

from __future__ import annotations

import math
import random as _random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, final

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Backoff", "BackoffTimer"]


def _check_seconds(name: str, value: float, *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {value!r}")
    if not (value >= 0 if allow_zero else value > 0) or not math.isfinite(value):
        raise ValueError(f"{name} must be {'' if allow_zero else 'positive '}finite seconds")


@final
@dataclass(frozen=True, slots=True)
class Backoff:
    """How long to wait before each reconnection: a frozen, validated value.

    The delay before the ``n``-th reconnection in a row is ``initial * multiplier ** n``,
    capped at ``maximum``, then shortened by a random fraction of up to ``jitter`` of itself
    (so that clients dropped together do not come back together). The count goes back to
    zero only once a connection has stayed open for ``reset_after`` seconds: a server that
    accepts connections and drops them at once is not hammered. The defaults are those of
    launchdarkly's eventsource client: 1 s doubling to 30 s, reset after 60 s healthy.

    When the server sends ``retry:``, that delay replaces ``initial`` (and ``maximum`` if
    it is larger). A ``Retry-After`` header is a lower bound for the next delay.

    Args:
        initial: the first delay, in seconds.
        maximum: the longest delay, in seconds.
        multiplier: the growth factor per failed attempt (1: constant delay).
        jitter: the largest fraction taken off a delay at random, in ``[0, 1]``.
        reset_after: seconds a connection must stay open for the delays to start over.

    Raises:
        TypeError, ValueError: an option is not a number in its range.
    """

    initial: float = 1.0
    maximum: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5
    reset_after: float = 60.0

    def __post_init__(self) -> None:
        _check_seconds("initial", self.initial, allow_zero=True)
        _check_seconds("maximum", self.maximum, allow_zero=True)
        _check_seconds("reset_after", self.reset_after, allow_zero=True)
        if self.maximum < self.initial:
            raise ValueError("maximum must not be below initial")
        _check_seconds("multiplier", self.multiplier)
        if self.multiplier < 1:
            raise ValueError("multiplier must be at least 1")
        _check_seconds("jitter", self.jitter, allow_zero=True)
        if self.jitter > 1:
            raise ValueError("jitter must be a fraction in [0, 1]")

    def timer(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
    ) -> BackoffTimer:
        """A new [BackoffTimer][sse_channels.client.BackoffTimer] following this policy.

        Args:
            clock: seconds from a monotonic clock (inject one to test).
            random: a number in ``[0, 1)`` for the jitter (inject one to test).
        """
        return BackoffTimer(self, clock=clock, random=random)


@final
class BackoffTimer:
    """The running state of one client's backoff: failures in a row, and since when it is open.

    Call ``connected()`` when a connection opens and ``next_delay()`` when it (or an
    attempt) ends; ``next_delay`` decides whether the open connection lasted long enough
    to start over.
    """

    __slots__ = ("_clock", "_open_since", "_random", "base", "failures", "policy")

    def __init__(
        self,
        policy: Backoff,
        *,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self.policy = policy
        #: The delay to start from: ``policy.initial``, or the server's ``retry:``.
        self.base = float(policy.initial)
        #: Reconnections in a row since the backoff last started over.
        self.failures = 0
        self._clock = clock
        self._random = random
        self._open_since: float | None = None

    def connected(self) -> None:
        """A connection is open: the healthy period starts now."""
        self._open_since = self._clock()

    def set_base(self, seconds: float) -> None:
        """Start from ``seconds`` (the server's ``retry:``) instead of ``policy.initial``."""
        self.base = seconds

    def next_delay(self, at_least: float | None = None) -> float:
        """The seconds to wait before the next attempt; counts it as one more failure.

        Args:
            at_least: a lower bound (a ``Retry-After`` header), applied after the jitter.
        """
        if self._open_since is not None:
            if self._clock() - self._open_since >= self.policy.reset_after:
                self.failures = 0
            self._open_since = None
        policy = self.policy
        cap = max(policy.maximum, self.base)
        delay = self.base
        if policy.multiplier > 1 and delay > 0:
            # Grown step by step and stopped at the cap: a power could overflow.
            for _ in range(self.failures):
                delay *= policy.multiplier
                if delay >= cap:
                    break
        delay = min(cap, delay)
        self.failures += 1
        delay *= 1 - policy.jitter * self._random()
        if at_least is not None:
            delay = max(delay, at_least)
        return delay
