"""Who may do what over the REST API: keys, scopes, channels, customers' own data."""

from __future__ import annotations

from typing import Any

from tests.api_support import (
    ADMIN_KEY,
    Api,
    api_fixture,  # noqa: F401  (the ``api`` fixture)
    bearer,
    captured_logs,
    expect,
    expect_problem,
    order_body,
)


async def paid_order(api: Api, headers: dict[str, str] | None = None,
                     *lines: tuple[str, int]) -> dict[str, Any]:
    """An order placed (by ``headers``, else a web storefront key) and captured."""
    order = await api.place_order(headers or await api.storefront("web"),
                                  order_body(*(lines or (("MUG", 1),))))
    captured: dict[str, Any] = expect(await api.client.post(
        f"/orders/{order['id']}/payments/capture", json={}, headers=api.admin), 200)
    return captured


# --------------------------------------------------------------------------- keys


async def test_no_key_bad_key_and_wrong_scheme_answer_401_problems(api: Api) -> None:
    for headers in ({}, bearer("sk_not_a_real_key_at_all_0000"), {"Authorization": "Bearer "},
                    {"Authorization": f"Basic {ADMIN_KEY}"}, {"Authorization": ADMIN_KEY}):
        for method, path in (("GET", "/orders"), ("POST", "/orders"),
                             ("GET", "/catalogue/products"), ("GET", "/fulfilment/queue"),
                             ("GET", "/orders/ord_nope"), ("DELETE", "/admin/keys/x")):
            response = await api.client.request(method, path, headers=headers,
                                                json=order_body() if method == "POST" else None)
            problem = expect_problem(response, 401, "unauthorized")
            assert response.headers["www-authenticate"] == "Bearer"
            assert problem["detail"]
    assert await api.order_count() == 0


async def test_a_revoked_key_answers_401_at_once(api: Api) -> None:
    issued = await api.issue_key("storefront", channel="web")
    headers = bearer(issued["secret"])
    expect(await api.client.get("/catalogue/products", headers=headers), 200)
    await api.revoke(issued["key"]["id"])
    expect_problem(await api.client.get("/catalogue/products", headers=headers), 401,
                   "unauthorized")
    expect_problem(await api.post_order(headers, order_body()), 401, "unauthorized")
    listed = expect(await api.client.get("/admin/keys", headers=api.admin), 200)
    revoked = next(k for k in listed["items"] if k["id"] == issued["key"]["id"])
    assert revoked["revoked_at"] is not None
    assert all("secret" not in k for k in listed["items"])
    # revoking the key of an admin key (the caller itself) works the same way
    admin_key = await api.issue_key("admin", scopes=["orders"])
    own = bearer(admin_key["secret"])
    expect(await api.client.get("/orders", headers=own), 200)
    await api.revoke(admin_key["key"]["id"])
    expect_problem(await api.client.get("/orders", headers=own), 401, "unauthorized")
    expect_problem(await api.client.delete("/admin/keys/key_nope", headers=api.admin), 404,
                   "not-found")


async def test_health_and_the_openapi_document_need_no_key(api: Api) -> None:
    assert expect(await api.client.get("/health"), 200)["status"] == "ok"
    document = expect(await api.client.get("/schema/openapi.json"), 200)
    assert document["openapi"].startswith("3.1")
    assert "bearer" in document["components"]["securitySchemes"]
    page = await api.client.get("/schema")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]


# --------------------------------------------------------------------------- storefront keys


async def test_a_storefront_key_cannot_do_staff_work(api: Api) -> None:
    shop = await api.storefront("web")
    order = await paid_order(api, shop)
    oid = order["id"]
    forbidden = [
        ("POST", f"/orders/{oid}/payments/refund", {"amount": 100}),
        ("POST", f"/orders/{oid}/payments/capture", {}),
        ("POST", f"/orders/{oid}/payments/void", {}),
        ("POST", "/inventory/adjustments", {"sku": "MUG", "location_id": "wh1", "delta": 5}),
        ("POST", "/inventory/counts", {"sku": "MUG", "location_id": "wh1", "counted": 0}),
        ("GET", "/inventory/levels", None),
        ("GET", "/customers", None),
        ("POST", "/customers", {"email": "x@example.com"}),
        ("GET", "/orders", None),
        ("GET", f"/orders/{oid}", None),
        ("POST", f"/orders/{oid}/cancel", {}),
        ("POST", f"/orders/{oid}/hold", {"reason": "x"}),
        ("GET", "/fulfilment/queue", None),
        ("POST", f"/orders/{oid}/shipments", {}),
        ("GET", "/admin/keys", None),
        ("POST", "/admin/keys", {"kind": "admin", "scopes": ["refunds"]}),
        ("GET", "/admin/plugins", None),
        ("PUT", "/catalogue/products/mug", {"id": "mug", "name": "Free mug"}),
    ]
    before = await api.levels()
    for method, path, body in forbidden:
        response = await api.client.request(method, path, json=body, headers=shop)
        expect_problem(response, 403, "forbidden")
    after = expect(await api.client.get(f"/orders/{oid}", headers=api.admin), 200)
    assert after["status"] == order["status"] and after["totals"] == order["totals"]
    assert await api.levels() == before
    # what a storefront is for still works
    expect(await api.client.get("/catalogue/products", headers=shop), 200)
    assert expect(await api.client.get("/catalogue/availability",
                                       params={"sku": "MUG"}, headers=shop), 200)["MUG"] == 99


async def test_a_storefront_key_places_orders_on_its_own_channel_only(api: Api) -> None:
    web, etsy = await api.storefront("web"), await api.storefront("etsy")
    expect_problem(await api.post_order(web, order_body(("MUG", 1), channel="etsy")), 403,
                   "forbidden")
    expect_problem(await api.post_order(etsy, order_body(("MUG", 1), channel="web")), 403,
                   "forbidden")
    assert await api.order_count() == 0
    assert await api.available("MUG") == 100
    placed = await api.place_order(etsy, order_body(("MUG", 1), channel="etsy"))
    assert placed["channel"] == "etsy"
    # nor a customer's order: that takes the customer's own token
    customer, _ = await api.customer()
    expect_problem(await api.post_order(web, order_body(customer_id=customer["id"])), 403,
                   "forbidden")
    # another channel's cart is not even there
    cart = expect(await api.client.post("/carts", json={}, headers=etsy), 201)
    assert cart["channel"] == "etsy"
    expect_problem(await api.client.get(f"/carts/{cart['id']}", headers=web), 404,
                   "not-found")
    expect_problem(await api.client.post(f"/carts/{cart['id']}/lines",
                                         json={"sku": "MUG"}, headers=web), 404, "not-found")
    expect_problem(await api.client.post("/carts", json={"channel": "web"}, headers=etsy),
                   422, "validation")
    assert await api.order_count() == 1


# --------------------------------------------------------------------------- customer tokens


async def test_a_customer_sees_only_their_own_orders(api: Api) -> None:
    erika, erika_token = await api.customer("erika@example.com", "Erika")
    max_, max_token = await api.customer("max@example.com", "Max")
    mine = await api.place_order(erika_token, order_body(("MUG", 1)))
    theirs = await api.place_order(max_token, order_body(("POSTER", 1), email="max@example.com"))
    guest = await api.place_order(await api.storefront("web"), order_body(("MUG", 1)))
    assert mine["customer_id"] == erika["id"] and theirs["customer_id"] == max_["id"]

    got = expect(await api.client.get(f"/orders/{mine['id']}", headers=erika_token), 200)
    assert got["id"] == mine["id"]
    expect(await api.client.get(f"/orders/{mine['id']}/timeline", headers=erika_token), 200)
    expect(await api.client.get(f"/orders/by-number/{mine['number']}", headers=erika_token),
           200)
    listed = expect(await api.client.get("/orders", headers=erika_token), 200)
    assert [o["id"] for o in listed["items"]] == [mine["id"]]
    # even asking for someone else's list gives one's own
    listed = expect(await api.client.get("/orders", params={"customer_id": max_["id"]},
                                         headers=erika_token), 200)
    assert [o["id"] for o in listed["items"]] == [mine["id"]]

    theirs_before = expect(await api.client.get(f"/orders/{theirs['id']}",
                                                headers=api.admin), 200)
    for other in (theirs, guest):
        oid = other["id"]
        attempts = [
            ("GET", f"/orders/{oid}", None),
            ("GET", f"/orders/by-number/{other['number']}", None),
            ("GET", f"/orders/{oid}/timeline", None),
            ("GET", f"/orders/{oid}/events", None),
            ("POST", f"/orders/{oid}/cancel", {"reason": "not mine"}),
            ("GET", f"/orders/{oid}/payments/methods", None),
            ("POST", f"/orders/{oid}/payments", {"gateway": "sandbox", "token": "tok_success"}),
            ("POST", f"/orders/{oid}/returns",
             {"lines": [{"line_id": "L1", "quantity": 1}], "reason": "not mine"}),
        ]
        for method, path, body in attempts:
            response = await api.client.request(method, path, json=body, headers=erika_token)
            problem = expect_problem(response, 404, "not-found")
            assert "Forbidden" not in problem["title"]
    # a 404 for someone else's order looks exactly like one for no order at all
    nothing = expect_problem(await api.client.get("/orders/ord_nope", headers=erika_token),
                             404, "not-found")
    someone = expect_problem(await api.client.get(f"/orders/{theirs['id']}",
                                                  headers=erika_token), 404, "not-found")
    assert set(nothing) == set(someone)
    theirs_after = expect(await api.client.get(f"/orders/{theirs['id']}",
                                               headers=api.admin), 200)
    assert theirs_after == theirs_before
    # and their customer record is not there either
    expect_problem(await api.client.get(f"/customers/{max_['id']}", headers=erika_token), 404,
                   "not-found")
    expect_problem(await api.client.get(f"/customers/{max_['id']}/export",
                                        headers=erika_token), 404, "not-found")
    me = expect(await api.client.get("/customers/me", headers=erika_token), 200)
    assert me["id"] == erika["id"]
    # max, for his part, can cancel his own order
    cancelled = expect(await api.client.post(f"/orders/{theirs['id']}/cancel",
                                             json={"reason": "changed my mind"},
                                             headers=max_token), 200)
    assert cancelled["status"] == "cancelled"


async def test_a_customer_token_cannot_do_staff_work_or_order_for_others(api: Api) -> None:
    erika, token = await api.customer()
    max_, _ = await api.customer("max@example.com", "Max")
    order = await paid_order(api, token)
    assert order["customer_id"] == erika["id"]
    for method, path, body in [
        ("GET", "/fulfilment/queue", None),
        ("POST", f"/orders/{order['id']}/payments/refund", {"amount": 100}),
        ("POST", f"/orders/{order['id']}/payments/capture", {}),
        ("POST", f"/orders/{order['id']}/hold", {"reason": "x"}),
        ("POST", f"/orders/{order['id']}/shipments", {}),
        ("GET", "/customers", None),
        ("DELETE", f"/customers/{erika['id']}", None),
        ("POST", f"/customers/{erika['id']}/tokens", {}),
        ("GET", "/inventory/levels", None),
        ("GET", "/admin/keys", None),
    ]:
        expect_problem(await api.client.request(method, path, json=body, headers=token), 403,
                       "forbidden")
    expect_problem(await api.post_order(token, order_body(customer_id=max_["id"])), 403,
                   "forbidden")
    after = await api.order(order["id"])
    assert after["totals"]["refunded"] == 0 and after["status"] == order["status"]


# --------------------------------------------------------------------------- scopes


async def test_refunds_need_the_refunds_scope(api: Api) -> None:
    order = await paid_order(api)
    everything_but = await api.admin_with("orders", "payments", "fulfilment", "inventory",
                                          "catalogue", "customers", "plugins")
    refund = f"/orders/{order['id']}/payments/refund"
    problem = expect_problem(await api.client.post(refund, json={"amount": 100},
                                                   headers=everything_but), 403, "forbidden")
    assert "refunds" in problem["detail"]
    assert (await api.order(order["id"]))["totals"]["refunded"] == 0

    refunds_only = await api.admin_with("refunds")
    refunded = expect(await api.client.post(refund, json={"amount": 100, "reason": "scratch"},
                                            headers=refunds_only), 200)
    assert refunded["totals"]["refunded"] == 100
    # a scope is exactly that scope: the refunds key reads no orders, the orders key
    # refunds nothing
    expect_problem(await api.client.get("/orders", headers=refunds_only), 403, "forbidden")
    expect(await api.client.get("/orders", headers=everything_but), 200)
    expect_problem(await api.client.post("/admin/keys", json={"kind": "admin",
                                                              "scopes": ["nonsense"]},
                                         headers=api.admin), 422, "validation")


# --------------------------------------------------------------------------- secrets


async def test_keys_are_stored_hashed_and_never_logged(api: Api) -> None:
    with captured_logs("DEBUG") as logs:
        shop_key = await api.issue_key("storefront", channel="web")
        customer, token = await api.customer()
        admin_key = await api.issue_key("admin", scopes=["orders", "refunds", "payments"])
        placed = await api.place_order(bearer(shop_key["secret"]), order_body(("MUG", 1)))
        mine = await api.place_order(token, order_body(("POSTER", 1)))
        declined = await api.post_order(bearer(shop_key["secret"]),
                                        order_body(("MUG", 1), token="tok_decline"))
        assert declined.status_code == 402
        expect(await api.client.post(f"/orders/{placed['id']}/payments/capture", json={},
                                     headers=bearer(admin_key["secret"])), 200)
        expect(await api.client.get(f"/orders/{mine['id']}", headers=token), 200)
        expect(await api.client.get("/orders", headers=bearer(admin_key["secret"])), 200)
        expect_problem(await api.client.get("/orders", headers=bearer("sk_wrong_secret_1234567")),
                       401, "unauthorized")
        # a webhook may carry its key in the URL; the request log keeps the path only
        hook = await api.client.post("/webhooks/tracking/flat_rate",
                                     params={"access_key": admin_key["secret"]},
                                     json={"tracking_number": "nope", "status": "delivered"})
        assert hook.status_code != 401
    text = logs.getvalue()
    assert '"path": "/orders"' in text or '"path":"/orders"' in text  # requests were logged
    secrets = [ADMIN_KEY, shop_key["secret"], admin_key["secret"],
               token["Authorization"].split(" ", 1)[1], "sk_wrong_secret_1234567"]
    for secret in secrets:
        assert secret not in text
        # the random tail alone, should a logger have split the key
        assert secret[-16:] not in text
    for payment_token in ("tok_success", "tok_decline"):
        assert payment_token not in text

    rows = await api.engine.db.fetch("SELECT * FROM api_keys")
    assert len(rows) == 4  # bootstrap admin, storefront, customer token, scoped admin
    stored = repr(rows)
    for secret in secrets:
        assert secret not in stored
        # the random tail alone (its last 16 characters: a token's random part may itself
        # contain "_", so splitting on it could leave a single, meaningless character)
        assert secret[-16:] not in stored
    assert {r["kind"] for r in rows} == {"admin", "storefront", "customer"}
    assert all(len(r["secret_hash"]) == 64 for r in rows)
    assert customer["id"] in {r["customer_id"] for r in rows}
