"""The backend contract now lives in the package, for third-party backends to run too.

Kept so that ``from backend_contract import BackendContract`` in older test modules still
works; new code imports ``sse_channels.testing.backend_contract``.
"""

from __future__ import annotations

from sse_channels.testing.backend_contract import (
    BackendContract,
    BackendFactory,
    Deliveries,
    NetworkedBackendContract,
)

__all__ = ["BackendContract", "BackendFactory", "Deliveries", "NetworkedBackendContract"]
