"""The errors say what to do about them."""

from __future__ import annotations

import pickle

import pytest

from sse_channels import ChannelStore, StoreClosedError

pytestmark = pytest.mark.anyio


async def test_sending_to_a_closed_store_says_it_cannot_be_reopened_and_to_make_one_per_test() -> (
    None
):
    store = ChannelStore()
    async with store:
        await store.send("room", "one")
    with pytest.raises(StoreClosedError) as raised:
        await store.send("room", "two")
    message = str(raised.value)
    assert message.startswith("the store is closed")
    assert "cannot be reopened" in message
    assert "create a new ChannelStore (in tests, one per test)" in message


async def test_entering_a_closed_store_again_names_the_fix() -> None:
    store = ChannelStore()
    async with store:
        pass
    with pytest.raises(StoreClosedError, match="cannot be reopened"):
        async with store:
            pass


def test_store_closed_error_survives_pickling_with_its_hint_once() -> None:
    error = pickle.loads(pickle.dumps(StoreClosedError()))
    assert str(error).count(StoreClosedError.HINT) == 1
