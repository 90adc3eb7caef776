"""``ordnung serve``: a real server process with two workers, over real HTTP."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ordnung.api.cli import build_parser
from ordnung.api.serve import DEMO_PLUGIN_SETTINGS, demo_plugin_settings
from tests.api_support import bearer, order_body
from tests.serve_support import ADMIN_KEY, Server, running_server, stop


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    with running_server(database_url, tmp_path, "--demo", "--log-json") as srv:
        yield srv


def printed_key(output: str, label: str) -> str:
    match = re.search(rf"{re.escape(label)}:\s+(\S+)", output)
    assert match is not None, f"{label!r} not printed:\n{output}"
    return match.group(1)


def test_serve_round_trip_over_real_http(server: Server) -> None:
    output = server.output()
    storefront = printed_key(output, "storefront key (channel web)")
    demo_admin = printed_key(output, "admin key (every scope)")
    assert storefront.startswith("pk_") and demo_admin.startswith("sk_")
    # found: a new pair at every start, unannounced
    assert "every start with --demo issues a new pair" in " ".join(output.split())

    with httpx.Client(base_url=server.base_url, timeout=10.0) as client:
        health = client.get("/health")
        assert health.json()["status"] == "ok"

        schema = client.get("/schema/openapi.json")
        assert schema.status_code == 200
        document = schema.json()
        assert document["openapi"].startswith("3.1")
        for path in ("/orders", "/orders/{order_id}", "/carts", "/catalogue/products",
                     "/inventory/levels", "/fulfilment/queue",
                     "/orders/{order_id}/payments/refund", "/orders/{order_id}/returns",
                     "/customers", "/admin/keys"):
            assert path in document["paths"], (path, sorted(document["paths"]))

        # no key: 401 problem
        anonymous = client.post("/orders", json=order_body(("SHIRT-M", 1)))
        assert anonymous.status_code == 401
        assert anonymous.headers["content-type"].startswith("application/problem+json")
        assert anonymous.json()["type"] == "https://ordnung.dev/problems/unauthorized"

        # the demo storefront places an order; the gift tier from --demo applies
        placed = client.post("/orders", json=order_body(("SHIRT-M", 2)),
                             headers={**bearer(storefront), "Idempotency-Key": "serve-1"})
        assert placed.status_code == 201, placed.text
        order = placed.json()
        assert order["channel"] == "web"
        assert any(line["gift"] and line["sku"] == "GIFT-TOTE" for line in order["lines"])

        # the same request again (any worker may answer) replays, no second order
        again = client.post("/orders", json=order_body(("SHIRT-M", 2)),
                            headers={**bearer(storefront), "Idempotency-Key": "serve-1"})
        assert again.status_code == 201 and again.json()["id"] == order["id"]
        assert again.headers.get("idempotent-replayed") == "true"

        # both admin keys read it; the storefront key may not list orders
        for key in (ADMIN_KEY, demo_admin):
            read = client.get(f"/orders/{order['id']}", headers=bearer(key))
            assert read.status_code == 200, read.text
            assert read.json()["number"] == order["number"]
        listed = client.get("/orders", headers=bearer(ADMIN_KEY))
        assert [o["id"] for o in listed.json()["items"]] == [order["id"]]
        assert client.get("/orders", headers=bearer(storefront)).status_code == 403
        assert client.get(f"/orders/{order['id']}").status_code == 401

    assert server.process.poll() is None  # still serving
    # SIGTERM stops the parent and its workers cleanly
    stop(server.process)
    assert server.process.returncode == 0, server.logs()
    logs = server.logs()
    assert "Traceback" not in logs, logs
    assert storefront not in logs and ADMIN_KEY not in logs and demo_admin not in logs
    assert '"event": "request"' in logs  # --log-json: the workers log JSON lines


def test_serve_options() -> None:
    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port, args.workers, args.demo, args.log_json) == \
        ("127.0.0.1", 8000, 1, False, False)
    args = build_parser().parse_args(["serve", "--host", "0.0.0.0", "--port", "9000",
                                      "--workers", "4", "--demo", "--log-json"])
    assert (args.host, args.port, args.workers, args.demo, args.log_json) == \
        ("0.0.0.0", 9000, 4, True, True)


def test_demo_settings_keep_the_operators_own() -> None:
    import json

    assert json.loads(demo_plugin_settings(None)) == DEMO_PLUGIN_SETTINGS
    mine = {"free_gift": {"tiers": []}, "sandbox": {"x": 1}}
    assert json.loads(demo_plugin_settings(json.dumps(mine))) == mine


def test_a_started_worker_freezes_its_heap_and_collects_young_objects_less_often() -> None:
    import gc

    from ordnung.api.serve import YOUNG_COLLECTION_EVERY, settle_heap

    before = gc.get_threshold()
    try:
        settle_heap()
        assert gc.get_freeze_count() > 0  # what the worker holds for good is out of sight
        assert gc.get_threshold() == (YOUNG_COLLECTION_EVERY, *before[1:])
        assert before[0] < YOUNG_COLLECTION_EVERY
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
