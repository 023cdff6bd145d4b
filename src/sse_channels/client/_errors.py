"""The errors the client raises when a stream cannot be read and will not be retried."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._exceptions import SSEChannelsError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["ClientError", "ContentTypeError", "StatusError"]


class ClientError(SSEChannelsError):
    """Base class of the errors raised by ``sse_channels.client``."""


class StatusError(ClientError):
    """The server answered with an HTTP status other than 200 (and not 204).

    The retry strategy sees it first; it is raised from the iteration when the strategy
    does not retry it (by default: 401, 403, 404 and every other status below 500 except
    408 and 429).

    Attributes:
        status: the HTTP status code.
        headers: the response headers, lower-case names (repeated ones joined with ``", "``).
        retry_after: the ``Retry-After`` header in seconds, or ``None``.
    """

    def __init__(
        self, status: int, headers: Mapping[str, str], retry_after: float | None = None
    ) -> None:
        super().__init__(f"the server answered {status} instead of an event stream")
        self.status = status
        self.headers = dict(headers)
        self.retry_after = retry_after


class ContentTypeError(ClientError):
    """The server answered 200 with a body that is not ``text/event-stream``.

    Attributes:
        content_type: the ``Content-Type`` the server sent (``""`` when it sent none).
    """

    def __init__(self, content_type: str) -> None:
        super().__init__(f"expected text/event-stream, got {content_type or 'no content type'!r}")
        self.content_type = content_type
