"""Cursor: a reader's place in one channel's log, and the two functions that move it.

``place`` decides where a new cursor starts (live, after a resume id, at the retained
start with a gap, or after what a networked backend must fetch first); ``take`` hands out
what lies past it and applies the slow-consumer policy. Both only read the channel, and
``take`` changes nothing but the cursor it is given: counting, gap events and waking are
the subscription's business. ``take`` answers with a plain tuple, because it runs once per
reader per wake-up (a named tuple or an object per call costs a few per cent of fan-out).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, final

if TYPE_CHECKING:
    from ._channel import Channel
    from ._event import Event

__all__ = ["Cursor", "Placement", "Policy", "Taken", "place", "take"]

#: How ``take`` treats a reader that fell behind: ``"disconnect"`` and ``"drop_oldest"``
#: are the store's slow-consumer policies; ``"record"`` (ChannelRecorder) never ends,
#: never coalesces a state channel, and reports what it missed as a gap.
Policy = Literal["disconnect", "drop_oldest", "record"]

#: ``(events, gap, dropped, coalesced)``: the events taken, in log order (``None``: the
#: ``"disconnect"`` policy says end the reader, and the cursor did not move); the ordering
#: key a ``slow_consumer`` gap signal stands at, or ``None``; how many events were skipped
#: for lag; how many state values were skipped for a newer one.
Taken = tuple["list[Event] | None", "int | None", int, int]

#: ``(cursor, gap, fetch)``: the new cursor; ``(reason, key)`` of a gap signal the reader
#: gets first, or ``None``; ``(after, through)`` to read from the backend's history at the
#: first read, or ``None``.
Placement = tuple["Cursor", "tuple[str, int] | None", "tuple[int, int] | None"]


@final
class Cursor:
    """The position in ``channel``'s log of the next event a reader has not had.

    ``skip``: the reader resumed from an id newer than this log (another process handed
    it out and its events have not arrived yet): events up to that key are skipped as
    they come in.
    """

    __slots__ = ("channel", "position", "skip")

    def __init__(self, channel: Channel, position: int, skip: int | None = None) -> None:
        self.channel = channel
        self.position = position
        self.skip = skip

    def __repr__(self) -> str:
        skip = "" if self.skip is None else f" skip<={self.skip}"
        return f"<Cursor {self.channel.name!r} at {self.position}{skip}>"


def place(channel: Channel, resume: int | None, latest: int) -> Placement:
    """Where a reader of ``channel`` starts.

    Args:
        channel: the channel's log.
        resume: the ordering key of the id it resumes from; ``None`` to start live; ``-1``
            for an id that is not ours (then ``latest``, the backend's newest key, is
            where its ``unknown_id`` gap stands).
        latest: see ``resume``.
    """
    end = channel.end
    if channel.is_state:
        # The current value first, unless the reader already has the latest one.
        position = end
        behind = resume is None or resume < 0 or channel.position_after(resume) < end
        if channel.events and behind:
            position = end - 1
        return Cursor(channel, position), None, None
    if resume is None:
        return Cursor(channel, end), None, None
    if resume < 0:
        return Cursor(channel, end), ("unknown_id", latest), None
    if channel.complete_after > resume:
        # The backend is complete here only after a later key: what this process did not
        # receive comes from the backend's history at the first read.
        through = max(channel.complete_after, channel.lost_through())
        return Cursor(channel, channel.position_after(through)), None, (resume, through)
    if channel.lost_through() > resume:
        position = channel.retained_start()
        return Cursor(channel, position), ("expired", channel.seq_at(position)), None
    position = channel.position_after(resume)
    # An id newer than this log: events up to it may still arrive; skip them.
    skip = resume if resume > channel.seq_at(end) else None
    return Cursor(channel, position, skip), None, None


def take(cursor: Cursor, policy: Policy, max_lag: int | None) -> Taken:
    """Everything past ``cursor`` in its channel's log; moves the cursor to the end.

    A reader whose next event is no longer retained, or (with ``max_lag``) that is more
    than ``max_lag`` events behind, is ended (``"disconnect"``: ``None``, the cursor stays)
    or moved forward past what it missed, with a gap signal at the last event skipped.
    A state channel hands out only its latest value (unless ``policy`` is ``"record"``).
    """
    channel = cursor.channel
    position = cursor.position
    start = channel.start
    events = channel.events
    end = start + len(events)
    if position >= end:
        return [], None, 0, 0
    skip = cursor.skip
    if skip is not None:
        position = max(position, channel.position_after(skip))
        if channel.seqs[-1] > skip:
            cursor.skip = None
        if position >= end:
            cursor.position = end
            return [], None, 0, 0
    gap: int | None = None
    dropped = coalesced = 0
    if position < start or end - position > channel.capacity or channel.times is not None:
        first = channel.retained_start()
        if channel.is_state and policy != "record":
            first = end - 1
        elif position < first:
            if policy == "disconnect":
                return None, None, 0, 0
            dropped = first - position
            gap = channel.seq_at(first)
            position = first
        if position >= end:  # everything it had not read has expired
            cursor.position = end
            return [], gap, dropped, 0
    if max_lag is not None and end - position > max_lag and not channel.is_state:
        if policy == "disconnect":
            return None, None, 0, 0
        dropped += end - position - max_lag
        position = end - max_lag
        gap = channel.seq_at(position)
    if channel.is_state and end - position > 1 and policy != "record":
        coalesced = end - position - 1
        position = end - 1
    cursor.position = end
    return events[position - start :], gap, dropped, coalesced
