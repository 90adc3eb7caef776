"""Logs carry order ids and never a payment token."""

from __future__ import annotations

import io
import json

from ordnung.core import Engine
from ordnung.core.logging import configure_logging
from tests.support import order_request


async def test_logs_bind_the_order_id_and_mask_tokens(engine: Engine) -> None:
    stream = io.StringIO()
    configure_logging("DEBUG", json=True, stream=stream)
    try:
        order = await engine.orders.place(order_request(("MUG", 1), token="tok_success"))
        import structlog

        structlog.get_logger("test").info("payment attempt", token="tok_secret_value")
    finally:
        configure_logging("INFO")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    placed = [entry for entry in lines if entry["event"] == "order placed"]
    assert placed and placed[0]["order_id"] == order.id
    assert "tok_success" not in stream.getvalue()
    assert "tok_secret_value" not in stream.getvalue()


def test_bound_ids_last_as_long_as_their_block() -> None:
    """Inside ``bound`` its ids are in the log context; after it, what was there before
    (an id bound outside, or none), also when the block raised or bound the id again."""
    import pytest
    import structlog

    from ordnung.core.runtime import bound

    context = structlog.contextvars.get_contextvars
    structlog.contextvars.bind_contextvars(request_id="r1")
    try:
        with bound(order_id="ord_1", payment_id=None):
            assert context() == {"request_id": "r1", "order_id": "ord_1"}
            with bound(order_id="ord_2", cart_id="cart_1"):
                assert context() == {"request_id": "r1", "order_id": "ord_2",
                                     "cart_id": "cart_1"}
            assert context() == {"request_id": "r1", "order_id": "ord_1"}
            with pytest.raises(RuntimeError), bound(order_id="ord_3"):
                structlog.contextvars.bind_contextvars(order_id="ord_4")
                raise RuntimeError
            assert context() == {"request_id": "r1", "order_id": "ord_1"}
        assert context() == {"request_id": "r1"}
    finally:
        structlog.contextvars.unbind_contextvars("request_id")
    assert context() == {}
