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
