"""Template orders for the growth scenario: a few real orders driven through the API into
the states a shop's history holds, so the bulk seed copies shapes the engine wrote itself.

Each template is one order in one state (processing, on hold, fulfilled, delivered,
cancelled), a guest's or a registered customer's, in one of two channels; its rows in
every table are what ``bench.bulk`` multiplies.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass
from typing import Any

import httpx

from bench import load

#: the states of the templates, the newest orders first: the backlog a warehouse works on
#: (paid, held) and the history behind it
BACKLOG_STATES = ("processing", "on_hold")
HISTORY_STATES = ("delivered", "fulfilled", "cancelled")
CHANNELS = ("web", "app")


@dataclass(frozen=True)
class Template:
    order_id: str
    state: str
    channel: str
    customer_id: str | None


class Api:
    """The admin client of the template run: every answer must be a success."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        response = await self.client.request(method, path, json=body)
        if response.status_code >= 400:
            raise RuntimeError(f"template {method} {path}: {response.status_code} "
                               f"{response.text[:500]}")
        answer: dict[str, Any] = response.json() if response.content else {}
        return answer


async def make(base_url: str, admin: dict[str, str], skus: list[str]) -> list[Template]:
    """One template per (state, channel, guest or customer)."""
    rng = random.Random(5)
    templates: list[Template] = []
    async with httpx.AsyncClient(base_url=base_url, headers=admin, timeout=30) as client:
        api = Api(client)
        await api.call("PUT", "/channels/app", {"id": "app", "name": "App"})
        for state in (*BACKLOG_STATES, *HISTORY_STATES):
            for channel in CHANNELS:
                for registered in (False, True):
                    customer_id = None
                    email = f"tpl{secrets.token_hex(4)}@example.com"
                    if registered:
                        customer = await api.call("POST", "/customers", {"email": email})
                        customer_id = str(customer["id"])
                    order = await api.call("POST", "/orders", {
                        **load.placement_body(rng, skus, lines=rng.choice((1, 2, 3, 4))),
                        "channel": channel, "email": email, "customer_id": customer_id})
                    await into_state(api, order, state)
                    templates.append(Template(str(order["id"]), state, channel, customer_id))
    return templates


async def into_state(api: Api, order: dict[str, Any], state: str) -> None:
    """Drive a freshly paid order (``processing``) on to ``state``."""
    path = f"/orders/{order['id']}"
    if state == "on_hold":
        await api.call("POST", f"{path}/hold", {"reason": "address check"})
    elif state == "cancelled":
        await api.call("POST", f"{path}/cancel", {"reason": "customer changed their mind"})
    elif state in ("fulfilled", "delivered"):
        await api.call("POST", f"{path}/notes", {"note": "gift wrap, please"})
        shipped = await api.call("POST", f"{path}/shipments", {})
        for shipment in shipped["shipments"]:
            at = f"{path}/shipments/{shipment['id']}"
            await api.call("POST", f"{at}/pick")
            await api.call("POST", f"{at}/pack", {
                "scans": [line["sku"] for line in shipment["lines"]
                          for _ in range(line["quantity"])]})
            await api.call("POST", f"{at}/ship", {})
            if state == "delivered":
                await api.call("POST", f"{at}/deliver")

