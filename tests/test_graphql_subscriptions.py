"""An order's events over GraphQL subscriptions (graphql-transport-ws), against a served
server: staff see every event, a customer who does not own the order sees nothing (the
same rules as the SSE stream), and the subscription ends when the order does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect

from tests.api_support import bearer, order_body
from tests.serve_support import ADMIN_KEY, running_server

SUBSCRIBE = ("subscription($o: String!) { orderEvents(orderId: $o) "
             "{ seq kind toState actor } }")


def follow(url: str, key: str, order_id: str) -> list[dict[str, Any]]:
    """Every message of one subscription until it completes or errs."""
    with connect(url, subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                 additional_headers=bearer(key), open_timeout=10) as ws:
        ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "connection_ack"
        ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {
            "query": SUBSCRIBE, "variables": {"o": order_id}}}))
        messages = []
        while True:
            message = json.loads(ws.recv(timeout=20))
            messages.append(message)
            if message["type"] in ("complete", "error"):
                return messages


def test_order_events_follow_the_sse_rules(database_url: str, tmp_path: Path) -> None:
    with running_server(database_url, tmp_path, "--demo", workers=1) as server:
        admin = bearer(ADMIN_KEY)
        base = server.base_url
        placed = httpx.post(base + "/orders", json=order_body(("MUG", 1)), headers=admin)
        assert placed.status_code == 201, placed.text
        order_id = placed.json()["id"]
        cancelled = httpx.post(f"{base}/orders/{order_id}/cancel", json={"reason": "test"},
                               headers=admin)
        assert cancelled.status_code == 200, cancelled.text
        url = base.replace("http://", "ws://") + "/graphql"
        messages = follow(url, ADMIN_KEY, order_id)
        assert messages[-1]["type"] == "complete", messages
        events = [m["payload"]["data"]["orderEvents"] for m in messages[:-1]]
        timeline = httpx.get(f"{base}/orders/{order_id}/timeline", headers=admin).json()
        assert [e["seq"] for e in events] == [e["seq"] for e in timeline["items"]]
        assert events[-1]["toState"] == "cancelled" or any(
            e["toState"] == "cancelled" for e in events)
        # a customer who does not own the order: not found, no event
        customer = httpx.post(base + "/customers", json={"email": "someone@example.com"},
                              headers=admin).json()
        token = httpx.post(f"{base}/customers/{customer['id']}/tokens", json={},
                           headers=admin).json()["secret"]
        refused = follow(url, token, order_id)
        assert [m["type"] for m in refused] == ["next", "complete"], refused
        assert refused[0]["payload"]["data"] is None
        assert refused[0]["payload"]["errors"][0]["extensions"]["status"] == 404, refused
        # the customer's own order: the customer's view, without the staff note
        own = httpx.post(base + "/orders", json=order_body(
            ("MUG", 1), customer_id=customer["id"], email="someone@example.com"),
            headers=admin).json()
        noted = httpx.post(f"{base}/orders/{own['id']}/notes", json={"note": "staff only"},
                           headers=admin)
        assert noted.status_code == 200, noted.text
        httpx.post(f"{base}/orders/{own['id']}/cancel", json={"reason": "x"}, headers=admin)
        seen = follow(url, token, own["id"])
        whole = follow(url, ADMIN_KEY, own["id"])
        assert seen[-1]["type"] == whole[-1]["type"] == "complete"
        kinds = [m["payload"]["data"]["orderEvents"]["kind"] for m in seen[:-1]]
        all_kinds = [m["payload"]["data"]["orderEvents"]["kind"] for m in whole[:-1]]
        assert kinds and len(kinds) < len(all_kinds), (kinds, all_kinds)
        assert not [k for k in kinds if "note" in k], kinds
