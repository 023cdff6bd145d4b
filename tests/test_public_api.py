from __future__ import annotations

import sse_channels

EXPECTED = {
    "GAP_EVENT",
    "PRESENCE_PREFIX",
    "ChannelStore",
    "CredentialExpiredError",
    "InvalidMemberError",
    "MemoryPresence",
    "MetadataTooLargeError",
    "Presence",
    "PresenceBackend",
    "PresenceChange",
    "PresenceSession",
    "PresenceView",
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
    "metrics",
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


# Public modules inside public packages, each a documented import path.
NESTED_PUBLIC_MODULES = {
    "backends": {"memory", "postgres", "redis"},
    "metrics": {"prometheus", "otel"},
    "testing": {"backend_contract", "presence_contract"},
}


def public_modules_of(package: str) -> set[str]:
    import importlib
    import pkgutil

    path = importlib.import_module(package).__path__
    return {m.name for m in pkgutil.iter_modules(path) if not m.name.startswith("_")}


def test_every_private_module_is_underscored() -> None:
    public = public_modules_of("sse_channels")
    assert public <= PUBLIC_MODULES, public - PUBLIC_MODULES


def test_every_public_module_is_still_there() -> None:
    # A public module that disappears (renamed, folded into another, made private) breaks
    # every user who imports it: this fails until the list above says so on purpose.
    assert public_modules_of("sse_channels") == PUBLIC_MODULES
    for package, modules in NESTED_PUBLIC_MODULES.items():
        assert public_modules_of(f"sse_channels.{package}") >= modules, package


def test_every_public_module_imports() -> None:
    import importlib

    names = {f"sse_channels.{name}" for name in PUBLIC_MODULES} | {
        f"sse_channels.{package}.{name}"
        for package, modules in NESTED_PUBLIC_MODULES.items()
        for name in modules
    }
    for name in sorted(names):
        assert importlib.import_module(name).__name__ == name


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


BACKEND_CONTRACT_EXPECTED = {
    "BackendContract",
    "BackendFactory",
    "Deliveries",
    "NetworkedBackendContract",
}


def test_backend_contract_module_exports_its_suite() -> None:
    import sse_channels.testing.backend_contract as contract

    assert set(contract.__all__) == BACKEND_CONTRACT_EXPECTED
    for name in contract.__all__:
        assert hasattr(contract, name), name


def test_postgres_backend_package_exports_its_curated_names() -> None:
    import sse_channels.backends.postgres as postgres

    assert postgres.__all__ == [
        "PostgresBackend",
        "PostgresPresence",
        "schema_sql",
        "send_in",
        "send_in_async",
    ]
    for name in postgres.__all__:
        assert getattr(postgres, name).__module__ == "sse_channels.backends.postgres", name


PROMETHEUS_EXPECTED = {
    "CHANNEL_LABEL",
    "DELIVERY_LAG_BUCKETS",
    "STREAM_DURATION_BUCKETS",
    "PrometheusMetrics",
    "metrics_app",
    "with_metrics",
}


def test_prometheus_metrics_module_exports_its_names() -> None:
    import sse_channels.metrics
    import sse_channels.metrics.prometheus as prometheus

    assert sse_channels.metrics.__all__ == []  # each library in its own module
    assert set(prometheus.__all__) == PROMETHEUS_EXPECTED
    for name in prometheus.__all__:
        obj = getattr(prometheus, name)
        if isinstance(obj, type) or callable(obj):
            assert obj.__module__ == "sse_channels.metrics.prometheus", name


def test_otel_metrics_module_exports_its_names() -> None:
    import sse_channels.metrics.otel as otel

    expected = {"DELIVERY_LAG_BOUNDARIES", "STREAM_DURATION_BOUNDARIES", "OpenTelemetryMetrics"}
    assert set(otel.__all__) == expected
    assert otel.OpenTelemetryMetrics.__module__ == "sse_channels.metrics.otel"


def test_presence_contract_module_exports_its_suite() -> None:
    import sse_channels.testing.presence_contract as contract

    assert set(contract.__all__) == {
        "NetworkedPresenceContract",
        "PresenceContract",
        "PresenceFactory",
        "StoreBackendFactory",
        "follow_until",
    }
    for name in contract.__all__:
        assert hasattr(contract, name), name


def test_redis_backend_package_exports_the_backend_and_the_presence() -> None:
    import sse_channels.backends.redis as redis_package

    assert redis_package.__all__ == ["RedisBackend", "RedisPresence"]
    for name in redis_package.__all__:
        assert getattr(redis_package, name).__module__ == "sse_channels.backends.redis", name
