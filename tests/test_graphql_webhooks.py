"""Webhook endpoints and their delivery log through GraphQL: the same scope, checks and
answers as ``/admin/webhooks``, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from standardwebhooks.webhooks import Webhook

from tests.api_support import Api, api_client, held, order_body
from tests.test_graphql import PROBLEMS, gql, only_error

ENDPOINT = "id url eventTypes channels enabled disabledReason signingSecrets"


@pytest.fixture(name="api")
async def private_hooks_api(database_url: str) -> AsyncIterator[Api]:
    """The API with webhook URLs on this machine allowed (the receiver would be local)."""
    async with held(api_client(database_url, webhooks_allow_private=True)) as running:
        yield running


async def test_endpoints_are_managed_through_graphql_with_the_webhooks_scope(api: Api) -> None:
    staff = await api.admin_with("webhooks")
    body = await gql(api, staff, "mutation { createWebhookEndpoint(url: "
                                 "\"http://127.0.0.1:9/hooks\", eventTypes: [\"order.*\"]) "
                                 f"{{ {ENDPOINT} secret }} }}")
    made = body["data"]["createWebhookEndpoint"]
    assert made["secret"].startswith("whsec_") and made["eventTypes"] == ["order.*"], body
    Webhook(made["secret"])  # a secret an off-the-shelf verifier takes
    endpoint_id = made["id"]

    listed = await gql(api, staff, f"{{ webhookEndpoints(first: 10) {{ items {{ {ENDPOINT} }} "
                                   "next } }")
    assert [e["id"] for e in listed["data"]["webhookEndpoints"]["items"]] == [endpoint_id]
    assert "secret" not in listed["data"]["webhookEndpoints"]["items"][0]

    changed = await gql(api, staff, "mutation($id: String!) { updateWebhookEndpoint(id: $id, "
                                    "eventTypes: [\"payment.*\"], enabled: false) "
                                    f"{{ {ENDPOINT} }} }}", {"id": endpoint_id})
    assert changed["data"]["updateWebhookEndpoint"]["eventTypes"] == ["payment.*"]
    assert changed["data"]["updateWebhookEndpoint"]["enabled"] is False

    rotated = await gql(api, staff, "mutation($id: String!) { rotateWebhookSecret(id: $id, "
                                    "graceS: 60) { secret signingSecrets } }",
                        {"id": endpoint_id})
    assert rotated["data"]["rotateWebhookSecret"]["signingSecrets"] == 2, rotated
    assert rotated["data"]["rotateWebhookSecret"]["secret"] != made["secret"]

    deliveries = await gql(api, staff, "query($id: String!) { webhookDeliveries(endpointId: "
                                       "$id, status: \"failed\") { items { id } next } }",
                           {"id": endpoint_id})
    assert deliveries["data"]["webhookDeliveries"] == {"items": [], "next": None}
    again = await gql(api, staff, "mutation($id: String!) { redeliverWebhooks(endpointId: "
                                  "$id) }", {"id": endpoint_id})
    assert again["data"]["redeliverWebhooks"] == 0

    gone = await gql(api, staff, "mutation($id: String!) { deleteWebhookEndpoint(id: $id) }",
                     {"id": endpoint_id})
    assert gone["data"]["deleteWebhookEndpoint"] == endpoint_id
    missing = only_error(await gql(api, staff, "query($id: String!) { webhookEndpoint(id: $id) "
                                               "{ id } }", {"id": endpoint_id}))
    assert missing["extensions"]["type"] == PROBLEMS + "not-found"
    assert missing["extensions"]["status"] == 404


async def test_graphql_refuses_what_rest_refuses(api: Api) -> None:
    other = await api.admin_with("orders", "plugins")
    refused = only_error(await gql(api, other, "{ webhookEndpoints { items { id } } }"))
    assert refused["extensions"]["status"] == 403, refused
    shop = await api.storefront("web")
    refused = only_error(await gql(api, shop, "mutation { createWebhookEndpoint(url: "
                                              "\"http://127.0.0.1:9/\", eventTypes: [\"*\"]) "
                                              "{ id } }"))
    assert refused["extensions"]["status"] == 403, refused

    staff = await api.admin_with("webhooks")
    bad = only_error(await gql(api, staff, "mutation { createWebhookEndpoint(url: "
                                           "\"http://127.0.0.1:9/\", eventTypes: "
                                           "[\"no.such.type\"]) { id } }"))
    assert bad["extensions"]["status"] == 422, bad
    api.engine.config.webhooks_allow_private = False
    private = only_error(await gql(api, staff, "mutation { createWebhookEndpoint(url: "
                                               "\"http://10.0.0.8/hook\", eventTypes: "
                                               "[\"*\"]) { id } }"))
    assert private["extensions"]["type"] == PROBLEMS + "webhook-url-refused", private
    listed = await gql(api, staff, "{ webhookEndpoints { items { id } } }")
    assert listed["data"]["webhookEndpoints"]["items"] == []


async def test_deliveries_are_read_through_graphql(api: Api) -> None:
    staff = await api.admin_with("webhooks")
    made = (await gql(api, staff, "mutation { createWebhookEndpoint(url: "
                                  "\"http://127.0.0.1:9/hooks\", eventTypes: "
                                  "[\"order.placed\"]) { id } }"))["data"]
    endpoint_id = made["createWebhookEndpoint"]["id"]
    shop = await api.storefront("web")
    placed = await api.place_order(shop, order_body(("MUG", 1)))
    await api.engine.webhook_worker.run_once()
    page = await gql(api, staff, "query($id: String!) { webhookDeliveries(endpointId: $id) "
                                 "{ items { id type status eventId attempts } } }",
                     {"id": endpoint_id})
    items = page["data"]["webhookDeliveries"]["items"]
    assert [d["type"] for d in items] == ["order.placed"], page
    one = await gql(api, staff, "query($e: String!, $d: String!) { webhookDelivery("
                                "endpointId: $e, deliveryId: $d) { id type payload "
                                "attemptLog { statusCode error } } }",
                    {"e": endpoint_id, "d": items[0]["id"]})
    delivery = one["data"]["webhookDelivery"]
    assert delivery["id"] == items[0]["id"] and delivery["type"] == "order.placed", one
    assert delivery["payload"]["type"] == "order.placed", one
    assert delivery["payload"]["data"]["id"] == placed["id"], one


async def test_the_payload_shape_is_chosen_and_checked_through_graphql(api: Api) -> None:
    staff = await api.admin_with("webhooks")
    body = await gql(api, staff, "mutation { createWebhookEndpoint(url: "
                                 "\"http://127.0.0.1:9/hooks\", eventTypes: [\"order.*\"], "
                                 "shape: \"customer\") { id shape } }")
    made = body["data"]["createWebhookEndpoint"]
    assert made["shape"] == "customer", body
    changed = await gql(api, staff, "mutation($id: String!) { updateWebhookEndpoint(id: $id, "
                                    "shape: \"staff\") { shape } }", {"id": made["id"]})
    assert changed["data"]["updateWebhookEndpoint"]["shape"] == "staff"
    refused = await gql(api, staff, "mutation { createWebhookEndpoint(url: "
                                    "\"http://127.0.0.1:9/hooks\", eventTypes: [\"*\"], "
                                    "shape: \"partner\") { id } }")
    error = only_error(refused)
    assert error["extensions"]["field"] == "shape" and "partner" in error["message"], refused
    listed = await gql(api, staff, "{ webhookEndpoints(first: 10) { items { id } } }")
    assert [e["id"] for e in listed["data"]["webhookEndpoints"]["items"]] == [made["id"]]
