"""Backends carry events between processes. ``MemoryBackend`` is the default."""

from __future__ import annotations

from ._base import Backend, Deliver
from .memory import MemoryBackend

__all__ = ["Backend", "Deliver", "MemoryBackend"]
