"""``ordnung serve``: a real server process with two workers, over real HTTP."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ordnung.api.cli import build_parser
from ordnung.api.serve import DEMO_PLUGIN_SETTINGS, demo_plugin_settings
from tests.api_support import bearer, order_body

ADMIN_KEY = "sk_serve_test_admin_0123456789abcdef"
START_TIMEOUT = 60.0  # generous: a loaded CI box spawns workers slowly


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    def __init__(self, process: subprocess.Popen[str], base_url: str, out: Path,
                 err: Path) -> None:
        self.process = process
        self.base_url = base_url
        self.out = out
        self.err = err

    def output(self) -> str:
        return self.out.read_text()

    def logs(self) -> str:
        return self.err.read_text()


def stop(process: subprocess.Popen[str], timeout: float = 15.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ORDNUNG_") or k.startswith("ORDNUNG_TEST_")}
    env.update(ORDNUNG_DATABASE_URL=database_url, ORDNUNG_ADMIN_KEY=ADMIN_KEY,
               PYTHONUNBUFFERED="1")
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "ordnung.api.cli", "serve", "--port", str(port),
             "--workers", "2", "--demo", "--log-json"],
            cwd=tmp_path, env=env, stdout=stdout, stderr=stderr, text=True,
            start_new_session=True)
    srv = Server(process, f"http://127.0.0.1:{port}", out, err)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"ordnung serve exited with {process.returncode}:\n"
                            f"{srv.output()}\n{srv.logs()}")
            try:
                if httpx.get(srv.base_url + "/health", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"no /health within {START_TIMEOUT:.0f} s:\n{srv.output()}\n"
                            f"{srv.logs()}")
            time.sleep(0.2)
        yield srv
    finally:
        stop(process)
        if process.poll() is None:  # pragma: no cover - kill the whole group as a last resort
            os.killpg(process.pid, signal.SIGKILL)


def printed_key(output: str, label: str) -> str:
    match = re.search(rf"{re.escape(label)}:\s+(\S+)", output)
    assert match is not None, f"{label!r} not printed:\n{output}"
    return match.group(1)


def test_serve_round_trip_over_real_http(server: Server) -> None:
    output = server.output()
    storefront = printed_key(output, "storefront key (channel web)")
    demo_admin = printed_key(output, "admin key (every scope)")
    assert storefront.startswith("pk_") and demo_admin.startswith("sk_")

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
