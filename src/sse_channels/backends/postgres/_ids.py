"""Positions, ordering keys, epochs and the id format.

A row's *position* is ``(txid, id)``: the inserting transaction's id (``xid8``, which never
wraps) and the row's identity value. Readers deliver rows in position order (see
``_backend``'s docstring for why that order is final). The store needs one ``int`` per
event, so:

- ``position_key(txid, id) = txid << 64 | id`` sorts exactly as ``(txid, id)`` does;
- the ordering key is ``generation << 128 | position_key``, where ``generation`` counts the
  epochs this process has seen, so that a new epoch sorts after every older one;
- the public id is ``"<label>-<txid>.<id>"``, the label naming the epoch (the ``meta``
  row made with the tables: a new label means the log was lost).

Pure: no I/O; imports nothing of ours.
"""

from __future__ import annotations

from typing import final

__all__ = ["MASK", "Epoch", "event_id", "position_key", "split_key"]

_SHIFT = 64
MASK = (1 << _SHIFT) - 1
_GENERATION = 2 * _SHIFT


def position_key(txid: int, row_id: int) -> int:
    """The key of a position within its epoch."""
    return txid << _SHIFT | row_id


def split_key(key: int) -> tuple[int, int]:
    """``(txid, id)`` of a key (of any generation)."""
    return (key >> _SHIFT) & MASK, key & MASK


def event_id(label: str, txid: int, row_id: int) -> str:
    """The public id of the row at ``(txid, id)`` of epoch ``label``."""
    return f"{label}-{txid}.{row_id}"


def _digits(text: str) -> int | None:
    if not (text.isascii() and text.isdigit()) or len(text) > 20:
        return None
    value = int(text)
    return value if value <= MASK else None


@final
class Epoch:
    """The epoch this process follows, and the newest key it has seen."""

    __slots__ = ("_labels", "base", "generation", "label", "latest")

    def __init__(self) -> None:
        self.label: str | None = None
        self.generation = 0
        #: ``generation << 128``: the ordering key of this epoch's position ``(0, 0)``.
        self.base = 0
        self.latest = 0
        self._labels: dict[int, str] = {}

    def key(self, txid: int, row_id: int) -> int:
        return self.base + position_key(txid, row_id)

    def format_id(self, key: int) -> str:
        txid, row_id = split_key(key)
        return event_id(self._labels.get(key >> _GENERATION, "0"), txid, row_id)

    def parse_id(self, text: str) -> int | None:
        """The ordering key of an id of this epoch; ``None`` for any other id."""
        label, _, rest = text.partition("-")
        if label != self.label:
            return None
        txid_text, dot, id_text = rest.partition(".")
        txid, row_id = _digits(txid_text), _digits(id_text)
        if not dot or txid is None or row_id is None:
            return None
        return self.key(txid, row_id)

    def saw(self, key: int) -> None:
        if key > self.latest:
            self.latest = key

    def adopt(self, label: str) -> bool:
        """Follow the epoch ``label``.

        Returns:
            True if it replaced the epoch this process followed (the log was lost and
            everything not read yet is gone); False for the same epoch, or the first.
        """
        if label == self.label:
            return False
        first = self.label is None
        self.generation += 1
        self.base = self.generation << _GENERATION
        self.label = label
        self._labels[self.generation] = label
        self.latest = max(self.latest, self.base)
        return not first
