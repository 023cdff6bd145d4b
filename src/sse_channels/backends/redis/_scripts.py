"""The Lua scripts, loaded from the package's ``lua/`` folder, and the commands that run them.

Each script is a file (``publish.lua``, ``history.lua``, ``sync.lua``) whose header says
what it takes and returns. A script's ``@NAME@`` placeholders are filled in once per
backend (its ``maxlen``, ``ttl``, ...), so the text, and with it the SHA1 that ``EVALSHA``
names, is fixed for the backend's life. Commands are ``EVALSHA``; a Redis that does not
know the script (new, restarted, flushed) answers ``NOSCRIPT``, and ``run`` then loads it
and asks again (the script did not run, so this is safe).

Imports redis-py's exceptions and ``_keys`` / ``_resp``.
"""

from __future__ import annotations

import hashlib
import re
from importlib.resources import files
from typing import TYPE_CHECKING, Any, final

from redis.exceptions import NoScriptError

from ._resp import pack, pack_args

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._keys import Keys

__all__ = ["SCRIPT_NAMES", "Script", "Scripts", "load", "run"]

#: The scripts the package ships, as ``lua/<name>.lua``.
SCRIPT_NAMES = ("history", "publish", "sync")
#: Publish commands whose constant start (script, keys) is cached, per channel.
_CACHED_HEADS = 10_000
_PLACEHOLDER = re.compile(r"@([A-Z]+)@")


def load(name: str) -> str:
    """The text of ``lua/<name>.lua``, from the installed package."""
    return files(__package__ or __name__).joinpath("lua").joinpath(f"{name}.lua").read_text("utf-8")


@final
class Script:
    """One script with its placeholders filled in: its text and SHA1.

    Raises:
        ValueError: a placeholder of the file has no value, or a value no placeholder.
    """

    __slots__ = ("lua", "sha")

    def __init__(self, name: str, **values: int) -> None:
        text = load(name)
        wanted = set(_PLACEHOLDER.findall(text))
        if wanted != set(values):
            raise ValueError(f"{name}.lua takes {sorted(wanted)}, not {sorted(values)}")
        text = _PLACEHOLDER.sub(lambda match: str(values[match[1]]), text)
        self.lua = text.encode()
        self.sha = hashlib.sha1(self.lua).hexdigest().encode()


async def run(call: Callable[[bytes], Awaitable[Any]], command: bytes, script: Script) -> Any:
    """Send ``command`` (an ``EVALSHA`` of ``script``) with ``call``; load the script if need be."""
    try:
        return await call(command)
    except NoScriptError:  # a new or restarted Redis: not run, so safe to repeat
        await call(pack((b"SCRIPT", b"LOAD", script.lua)))
        return await call(command)


@final
class Scripts:
    """The three scripts of one backend, and the commands that run them."""

    def __init__(self, keys: Keys, *, maxlen: int, ttl_ms: int) -> None:
        self._keys = keys
        self.publish = Script(
            "publish", MAXLEN=maxlen, TTL=ttl_ms, WINDOW=1000, OFFSET=keys.channel_offset
        )
        self.history = Script("history", MAXLEN=maxlen)
        self.sync = Script("sync")
        #: Per channel: the constant middle of its publish command (script, keys).
        self._heads: dict[str, bytes] = {}

    def publish_keys(self, channel: str) -> list[bytes]:
        """The ``KEYS`` of ``publish.lua`` for ``channel``."""
        keys = self._keys
        return [keys.epoch, keys.counter, keys.stream(channel), keys.registry, keys.last]

    def publish_args(
        self, fields: list[bytes], token: bytes, retry: bool, candidate: str, current: str
    ) -> list[bytes]:
        """The ``ARGV`` of ``publish.lua`` (``fields``: from ``_entry.encode``)."""
        flag = b"1" if retry else b"0"
        return [candidate.encode(), token, flag, *fields, current.encode()]

    def publish_command(
        self,
        channel: str,
        fields: list[bytes],
        token: bytes,
        retry: bool,
        candidate: str,
        current: str,
    ) -> bytes:
        """The ``EVALSHA`` that stores one event (see ``publish.lua``)."""
        head = self._heads.get(channel)
        if head is None:
            keys = self.publish_keys(channel)
            head = pack((b"EVALSHA", self.publish.sha, b"5", *keys))[4:]  # without "*8\r\n"
            if len(self._heads) < _CACHED_HEADS:
                self._heads[channel] = head
        args = self.publish_args(fields, token, retry, candidate, current)
        return b"*%d\r\n%s%s" % (8 + len(args), head, pack_args(args))

    def history_command(self, channel: str, low: int, high: int) -> bytes:
        """The ``EVALSHA`` that reads ``low < n <= high`` of ``channel`` (``history.lua``)."""
        args = (b"(%d-0" % low, b"%d-0" % high, b"(%d-0" % high)
        stream = self._keys.stream(channel)
        return pack((b"EVALSHA", self.history.sha, b"1", stream, *args))

    def sync_command(self, candidate: str, current: str, latest_n: int) -> bytes:
        """The ``EVALSHA`` that reads (or begins) the epoch and counter (``sync.lua``)."""
        keys = self._keys
        args = (candidate.encode(), current.encode(), b"%d" % latest_n)
        return pack((b"EVALSHA", self.sync.sha, b"2", keys.epoch, keys.counter, *args))
