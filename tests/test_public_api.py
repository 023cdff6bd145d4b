from __future__ import annotations

import sse_channels

EXPECTED = {
    "GAP_EVENT",
    "ChannelStore",
    "StoreStatistics",
    "Subscription",
    "RESERVED_EVENT_NAMES",
    "BackendError",
    "Event",
    "SSEChannelsError",
    "SSEDecoder",
    "SlowConsumerError",
    "StoreClosedError",
    "SubscriptionClosed",
    "__version__",
    "format_sse",
    "parse_sse",
}

# Modules users import from directly; everything else is private (underscored).
PUBLIC_MODULES = {
    "asgi",
    "backends",
    "browser",
    "client",
    "demo",
    "django",
    "litestar",
    "quart",
    "starlette",
    "testing",
}


def test_public_surface_is_exactly_the_curated_names() -> None:
    assert set(sse_channels.__all__) == EXPECTED


def test_public_names_report_the_package_as_their_module() -> None:
    for name in sse_channels.__all__:
        obj = getattr(sse_channels, name)
        if isinstance(obj, type) or callable(obj):
            assert obj.__module__ == "sse_channels", name


def test_every_private_module_is_underscored() -> None:
    import pkgutil

    public = {
        m.name for m in pkgutil.iter_modules(sse_channels.__path__) if not m.name.startswith("_")
    }
    assert public <= PUBLIC_MODULES, public - PUBLIC_MODULES


TESTING_EXPECTED = {
    "ChannelRecorder",
    "CollectTimeoutError",
    "SSEStream",
    "assert_events",
    "collect",
    "collect_sse",
    "connect_sse",
    "drain",
    "gap_reason",
}


def test_testing_module_exports_a_sorted_curated_surface() -> None:
    import sse_channels.testing

    names = sse_channels.testing.__all__
    assert set(names) == TESTING_EXPECTED
    assert names == sorted(names, key=lambda name: (not name[0].isupper(), name))
    for name in names:
        assert getattr(sse_channels.testing, name).__module__ == "sse_channels.testing", name
