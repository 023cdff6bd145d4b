"""``sse_channels.django.send_on_commit``: sent once the transaction commits, never if not.

Runs on SQLite (Django's own transactions, no server needed) and the in-memory backend:
the helper works on every backend.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import anyio
import pytest

pytest.importorskip("django")

import django_app
from sse_channels import ChannelStore
from sse_channels.testing import collect

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.anyio


@pytest.fixture
def alias(tmp_path: Path) -> Iterator[str]:
    from django.db import connections

    django_app.configure()
    name = f"on_commit_{threading.get_ident()}"
    configured = connections.configure_settings(
        {
            "default": {},
            name: {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "db.sqlite3")},
        }
    )
    connections.settings[name] = configured[name]
    try:
        yield name
    finally:
        connections[name].close()
        connections.settings.pop(name)


async def test_send_on_commit_sends_after_the_commit_and_never_after_a_rollback(
    alias: str,
) -> None:
    from django.db import transaction

    from sse_channels.django import send_on_commit

    async with ChannelStore() as store:
        subscription = store.subscribe("orders")
        heard: list[str] = []
        store.listen("orders", lambda event: heard.append(event.data))
        seen_inside: list[int] = []

        def work() -> None:
            with transaction.atomic(using=alias):
                send_on_commit(store, "orders", {"id": 1}, event="paid", using=alias)
                seen_inside.append(len(heard))
            try:
                with transaction.atomic(using=alias):
                    send_on_commit(store, "orders", {"id": 2}, using=alias)
                    raise RuntimeError("rolled back")
            except RuntimeError:
                pass
            with transaction.atomic(using=alias):
                payload = {"id": 3}
                send_on_commit(store, "orders", payload, using=alias)
                payload["id"] = 4  # serialised when scheduled: the change is not sent
            with transaction.atomic(using=alias):
                try:
                    with transaction.atomic(using=alias):  # a savepoint, rolled back alone
                        send_on_commit(store, "orders", {"id": 5}, using=alias)
                        raise ValueError
                except ValueError:
                    pass

        await anyio.to_thread.run_sync(work)
        events = await collect(subscription, 2, timeout=5)
        assert [(e.data, e.event) for e in events] == [('{"id":1}', "paid"), ('{"id":3}', None)]
        assert seen_inside == [0]  # nothing was sent before the commit
        assert heard == ['{"id":1}', '{"id":3}']
        with anyio.move_on_after(0.2):
            extra = await collect(subscription, 1)
            raise AssertionError(f"unexpected: {extra}")
        subscription.close()


def test_send_on_commit_refuses_bad_input_at_the_call(alias: str) -> None:
    from django.db import transaction

    from sse_channels.django import send_on_commit

    store = ChannelStore()
    with transaction.atomic(using=alias):
        with pytest.raises(ValueError, match="channel"):
            send_on_commit(store, "a*b", "x", using=alias)
        with pytest.raises(TypeError, match="channel"):
            send_on_commit(store, None, "x", using=alias)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            send_on_commit(store, "a", "x", id="bad\nid", using=alias)
        with pytest.raises(TypeError):
            send_on_commit(store, "a", object(), using=alias)
        assert transaction.get_connection(alias).run_on_commit == []
