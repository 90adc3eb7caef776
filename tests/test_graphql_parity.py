"""Parity of the two surfaces: every REST operation has a GraphQL counterpart, or is
listed here as not yet mirrored (the GraphQL API is being built up in increments).

The test fails when a REST route is in no list (a new route needs its GraphQL field, or
a deliberate entry below), when a mirrored operation's field is missing from the schema,
and when an operation listed as not yet mirrored has gained its planned field (move it
to ``MIRRORED``): so ``NOT_YET`` only shrinks."""

from __future__ import annotations

from litestar.routes import HTTPRoute

from ordnung.api.app import create_app
from ordnung.api.graphql.schema import build_schema

#: REST operation -> its GraphQL field ("Query.x" or "Mutation.x")
MIRRORED = {
    "GET /catalogue/products": "Query.products",
    "POST /admin/webhooks": "Mutation.createWebhookEndpoint",
    "GET /admin/webhooks": "Query.webhookEndpoints",
    "GET /admin/webhooks/{endpoint_id:str}": "Query.webhookEndpoint",
    "PATCH /admin/webhooks/{endpoint_id:str}": "Mutation.updateWebhookEndpoint",
    "DELETE /admin/webhooks/{endpoint_id:str}": "Mutation.deleteWebhookEndpoint",
    "POST /admin/webhooks/{endpoint_id:str}/rotate": "Mutation.rotateWebhookSecret",
    "GET /admin/webhooks/{endpoint_id:str}/deliveries": "Query.webhookDeliveries",
    "GET /admin/webhooks/{endpoint_id:str}/deliveries/{delivery_id:str}":
        "Query.webhookDelivery",
    "POST /admin/webhooks/{endpoint_id:str}/deliveries/{delivery_id:str}/redeliver":
        "Mutation.redeliverWebhooks",
    "POST /admin/webhooks/{endpoint_id:str}/redeliver": "Mutation.redeliverWebhooks",
    "GET /catalogue/products/{product_id:str}": "Query.product",
    "POST /carts": "Mutation.createCart",
    "GET /carts/{cart_id:str}": "Query.cart",
    "GET /carts/{cart_id:str}/shipping-quotes": "Query.cart",  # Cart.shippingQuotes
    "POST /carts/{cart_id:str}/lines": "Mutation.addCartLine",
    "PUT /carts/{cart_id:str}/lines/{sku:str}": "Mutation.setCartLine",
    "DELETE /carts/{cart_id:str}/lines/{sku:str}": "Mutation.removeCartLine",
    "PUT /carts/{cart_id:str}/addresses": "Mutation.setCartAddresses",
    "PUT /carts/{cart_id:str}/shipping-method": "Mutation.setCartShippingMethod",
    "POST /carts/{cart_id:str}/codes": "Mutation.applyCartCode",
    "DELETE /carts/{cart_id:str}/codes/{code:str}": "Mutation.removeCartCode",
    "POST /carts/{cart_id:str}/order": "Mutation.checkout",
    "GET /orders": "Query.orders",
    "GET /orders/{order_id:str}": "Query.order",
    "POST /orders/{order_id:str}/cancel": "Mutation.cancelOrder",
    "POST /orders/{order_id:str}/payments/capture": "Mutation.capturePayment",
    "POST /orders": "Mutation.placeOrder",
    "DELETE /accounts/sessions/current": "Mutation.signOut",
    "DELETE /accounts/sessions": "Mutation.signOutEverywhere",
    "POST /accounts/sessions/refresh": "Mutation.refreshSession",
    "POST /accounts/sessions": "Mutation.signIn",
    "POST /accounts/password-reset/confirm": "Mutation.resetPassword",
    "POST /accounts/password-reset": "Mutation.requestPasswordReset",
    "POST /accounts/me/claim-orders": "Mutation.claimOrders",
    "POST /accounts/email-verification/confirm": "Mutation.confirmEmail",
    "POST /accounts/email-verification": "Mutation.requestEmailVerification",
    "POST /accounts": "Mutation.register",
    "POST /admin/reactions/{reaction_id:str}/retry": "Mutation.retryReaction",
    "GET /admin/reactions/{reaction_id:str}": "Query.reaction",
    "GET /admin/reactions": "Query.reactions",
    "PUT /catalogue/products/{product_id:str}": "Mutation.putProduct",
    "POST /orders/{order_id:str}/transitions": "Mutation.transitionOrder",
    "POST /orders/{order_id:str}/payments": "Mutation.authorizePayment",
    "POST /inventory/counts": "Mutation.countInventory",
    "PUT /inventory/slices": "Mutation.setInventorySlices",
    "POST /inventory/adjustments": "Mutation.adjustInventory",
    "GET /inventory/movements": "Query.inventoryMovements",
    "PUT /inventory/locations/{location_id:str}": "Mutation.putLocation",
    "GET /inventory/locations": "Query.inventoryLocations",
    "GET /inventory/levels": "Query.inventoryLevels",
    "PUT /channels/{channel_id:str}": "Mutation.putChannel",
    "GET /channels": "Query.channels",
    "POST /customers/{customer_id:str}/tokens": "Mutation.issueCustomerToken",
    "GET /customers/{customer_id:str}/export": "Query.customerExport",
    "DELETE /customers/{customer_id:str}": "Mutation.eraseCustomer",
    "PATCH /customers/{customer_id:str}": "Mutation.updateCustomer",
    "GET /customers/{customer_id:str}": "Query.customer",
    "POST /customers": "Mutation.createCustomer",
    "GET /customers": "Query.customers",
    "POST /admin/maintenance": "Mutation.runMaintenance",
    "GET /admin/plugins": "Query.plugins",
    "GET /admin/lifecycle": "Query.lifecycle",
    "DELETE /admin/keys/{key_id:str}": "Mutation.revokeKey",
    "POST /admin/keys": "Mutation.issueKey",
    "GET /admin/keys": "Query.apiKeys",
    "GET /returns/{return_id:str}": "Query.return",
    "GET /returns": "Query.returns",
    "GET /shipments/{shipment_id:str}": "Query.shipment",
    "GET /shipments": "Query.shipments",
    "POST /carts/{cart_id:str}/order/stream-tokens": "Mutation.cartOrderStreamToken",
    "POST /orders/{order_id:str}/stream-tokens": "Mutation.orderStreamToken",
    "GET /fulfilment/queue": "Query.fulfilmentQueue",
    "POST /orders/{order_id:str}/returns": "Mutation.requestReturn",
    "POST /orders/{order_id:str}/returns/{return_id:str}/refund":
        "Mutation.refundReturn",
    "POST /orders/{order_id:str}/returns/{return_id:str}/receive":
        "Mutation.receiveReturn",
    "POST /orders/{order_id:str}/returns/{return_id:str}/reject":
        "Mutation.rejectReturn",
    "POST /orders/{order_id:str}/returns/{return_id:str}/approve":
        "Mutation.approveReturn",
    "GET /orders/{order_id:str}/payments/methods": "Query.paymentMethods",
    "GET /carts/{cart_id:str}/explanation": "Query.cartExplanation",
    "GET /orders/{order_id:str}/events": "Subscription.orderEvents",
    "POST /orders/{order_id:str}/notes": "Mutation.addOrderNote",
    "POST /orders/{order_id:str}/payments/void": "Mutation.voidPayment",
    "POST /orders/{order_id:str}/payments/refund": "Mutation.refundPayment",
    "GET /orders/{order_id:str}/timeline": "Query.orderTimeline",
    "GET /orders/by-number/{number:str}": "Query.orderByNumber",
    "GET /catalogue/availability": "Query.availability",
    "POST /orders/{order_id:str}/shipments/{shipment_id:str}/cancel":
        "Mutation.cancelShipment",
    "POST /orders/{order_id:str}/shipments/{shipment_id:str}/deliver":
        "Mutation.deliverShipment",
    "POST /orders/{order_id:str}/shipments/{shipment_id:str}/ship":
        "Mutation.shipShipment",
    "POST /orders/{order_id:str}/shipments/{shipment_id:str}/pack":
        "Mutation.packShipment",
    "POST /orders/{order_id:str}/shipments/{shipment_id:str}/pick":
        "Mutation.pickShipment",
    "POST /orders/{order_id:str}/shipments": "Mutation.createShipment",
    "POST /orders/{order_id:str}/release": "Mutation.releaseOrder",
    "POST /orders/{order_id:str}/hold": "Mutation.holdOrder",
}

#: not GraphQL operations by nature: probes, scraping, and URLs for machines that speak
#: plain HTTP (gateways' and carriers' webhooks, label files)
TRANSPORT = {
    "GET /health", "GET /health/live", "GET /health/ready", "GET /metrics",
    "POST /webhooks/payments/{gateway:str}", "POST /webhooks/tracking/{carrier:str}",
    "GET /labels/{carrier:str}/{tracking_number:str}",
}

#: REST operations not yet mirrored, each with the GraphQL field it will get, e.g.
#: ``"POST /orders": "Mutation.placeOrder"``: empty now that every operation has its field;
#: a new REST route lands here (or in MIRRORED) or the test fails
NOT_YET: dict[str, str] = {}


def rest_operations() -> set[str]:
    app = create_app(admin_key="sk_parity_test_0123456789abcdef")
    return {f"{method} {route.path}" for route in app.routes if isinstance(route, HTTPRoute)
            for handler in route.route_handlers if handler.resolve_include_in_schema()
            for method in handler.http_methods if method not in ("HEAD", "OPTIONS")}


def graphql_fields() -> set[str]:
    schema = build_schema(introspection=True)._schema
    fields = set()
    for root in (schema.query_type, schema.mutation_type, schema.subscription_type):
        if root is not None:
            fields |= {f"{root.name}.{name}" for name in root.fields}
    return fields


def test_every_rest_operation_is_mirrored_or_listed() -> None:
    rest = rest_operations()
    fields = graphql_fields()
    listed = set(MIRRORED) | TRANSPORT | set(NOT_YET)
    assert not rest - listed, f"REST operations with no GraphQL counterpart and not " \
                              f"listed: {sorted(rest - listed)}"
    assert not listed - rest, f"listed operations REST does not have: {sorted(listed - rest)}"
    assert not set(MIRRORED) & set(NOT_YET)
    missing = {op: f for op, f in MIRRORED.items() if f not in fields}
    assert not missing, f"mirrored operations whose field is missing: {missing}"
    gained = {op: f for op, f in NOT_YET.items() if f in fields}
    assert not gained, f"these now have their GraphQL field: move them to MIRRORED: {gained}"
    print(f"parity: {len(rest - TRANSPORT)} REST operations, {len(MIRRORED)} mirrored by "
          f"{len(set(MIRRORED.values()))} GraphQL fields, {len(NOT_YET)} not yet")
