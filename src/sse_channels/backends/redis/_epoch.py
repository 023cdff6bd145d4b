"""The epoch and the id format: what an event id says, and how it maps to an ordering key.

Redis numbers events with one counter, ``n``. The counter can start over (Redis restarted
without persistence, was flushed, or failed over to a lagging replica), so ``n`` alone
does not name an event: each run of the counter is an *epoch* with a random label, stored
in Redis as ``"<label>:<start>"`` (the first ``n`` it covers). Then:

- the public id of an event is ``"<label>-<n>"``;
- the ordering key the store sorts by is ``generation << 48 | n``, where ``generation``
  counts the epochs this process has seen, so a new epoch sorts after every older one.

Pure: no I/O; imports nothing of ours.
"""

from __future__ import annotations

import secrets
import string
from typing import final

__all__ = ["MASK", "SHIFT", "Epoch", "event_id", "label_of", "new_label"]

_ALPHABET = string.digits + string.ascii_lowercase
#: Ordering keys are ``generation << SHIFT | n``.
SHIFT = 48
MASK = (1 << SHIFT) - 1


def new_label() -> str:
    """A random epoch label: six characters of ``[0-9a-z]``."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(6))


def label_of(epoch: bytes | str) -> str:
    """The label of an epoch as Redis stores it (``"<label>:<start>"``)."""
    text = epoch.decode() if isinstance(epoch, bytes) else epoch
    return text.partition(":")[0]


def event_id(label: str, n: int) -> str:
    """The public id of event ``n`` of epoch ``label``."""
    return f"{label}-{n}"


@final
class Epoch:
    """The epoch this process follows, and the newest ordering key it has seen.

    ``candidate`` is the label this process proposes when it finds that Redis has none
    (the scripts begin an epoch with it); it is never proposed again once adopted.
    """

    __slots__ = ("_labels", "base", "candidate", "generation", "label", "latest", "start_n")

    def __init__(self) -> None:
        self.label: str | None = None
        self.generation = 0
        #: ``generation << SHIFT``: the ordering key of this epoch's ``n = 0``.
        self.base = 0
        #: The first ``n`` of this epoch: older numbers belong to no epoch we know.
        self.start_n = 0
        self.latest = 0
        self.candidate = new_label()
        self._labels: dict[int, str] = {}

    def format_id(self, key: int) -> str:
        """The id of an ordering key (of this epoch or an earlier one)."""
        return event_id(self._labels.get(key >> SHIFT, "0"), key & MASK)

    def parse_id(self, text: str) -> int | None:
        """The ordering key of an id of this epoch; ``None`` for any other id."""
        label, _, digits = text.partition("-")
        if label != self.label or not (digits.isascii() and digits.isdigit()):
            return None
        n = int(digits)
        if n < self.start_n or n > MASK:
            return None
        return self.base + n

    def current(self) -> str:
        """This epoch as Redis stores it (``""`` before the first)."""
        return f"{self.label}:{self.start_n}" if self.label is not None else ""

    def latest_n(self) -> int:
        """The newest ``n`` seen in this epoch (0 before the first)."""
        return self.latest - self.base if self.label is not None else 0

    def saw(self, n: int) -> None:
        """Event ``n`` of this epoch exists (a send's reply, a read)."""
        key = self.base + n
        if key > self.latest:
            self.latest = key

    def adopt(self, epoch: bytes | str, counter: int) -> bool:
        """Follow the epoch Redis reports (``counter``: its current ``n``).

        Returns:
            True if it replaced the epoch this process followed: Redis lost what it had,
            and everything not read yet is gone. False for the same epoch, or the first.
        """
        text = epoch.decode() if isinstance(epoch, bytes) else epoch
        label, _, start = text.partition(":")
        if label == self.label:
            self.saw(counter)
            return False
        if label == self.candidate:  # we proposed it: never propose it again
            self.candidate = new_label()
        first = self.label is None
        self.generation += 1
        self.base = self.generation << SHIFT
        self.label = label
        self._labels[self.generation] = label
        self.start_n = int(start) if start.isdigit() else 0
        self.latest = self.base + max(counter, self.start_n)
        return not first
