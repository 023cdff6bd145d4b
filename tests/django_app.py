"""The Django project of ``test_django.py``: settings, URLs and views in one module.

Settings are configured once per test session (``configure()``); each test puts its own
store in ``STATE["store"]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.http import HttpResponseForbidden
from django.urls import path

from _framework_scenarios import OPTIONS, expiry
from sse_channels.django import last_event_id, sse_response

if TYPE_CHECKING:
    from sse_channels import ChannelStore

STATE: dict[str, ChannelStore] = {}

SETTINGS: dict[str, Any] = {
    "DEBUG": False,
    "SECRET_KEY": "sse-channels-tests-only-" + "x" * 40,
    "ALLOWED_HOSTS": ["127.0.0.1", "localhost", "testserver"],
    "ROOT_URLCONF": __name__,
    "INSTALLED_APPS": [],
    "DATABASES": {},
    "USE_TZ": True,
    # GZip first, as Django's docs recommend; it must leave the event stream alone.
    "MIDDLEWARE": [
        "django.middleware.gzip.GZipMiddleware",
        "django.middleware.common.CommonMiddleware",
    ],
    # Refusals are logged by django.request; keep test output quiet.
    "LOGGING_CONFIG": None,
}


def configure() -> None:
    """Configure Django for this process, once; later calls do nothing."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(**SETTINGS)
        django.setup()


async def events(request: Any) -> Any:
    channel = request.GET.get("channel", "news")
    user = request.headers.get("x-user")
    if channel.startswith("private:") and user != "admin":
        return HttpResponseForbidden("forbidden\n", content_type="text/plain")
    store = STATE["store"]
    subscription = store.subscribe(channel, last_event_id=last_event_id(request), key=user)
    return sse_response(
        subscription,
        OPTIONS.get(request.GET.get("options", "")),
        expires=expiry(request.GET.get("expires_in")),
    )


urlpatterns = [path("events", events)]
