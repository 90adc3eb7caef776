"""OpenTelemetry tracing through a real server to a real OTLP/HTTP receiver.

``ORDNUNG_TRACING=true``: a span per request and per plugin hook call, with the order id;
query strings never reach a span.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.api_support import order_body
from tests.serve_support import ADMIN_KEY, running_server, stop

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


class Receiver(ThreadingHTTPServer):
    """An OTLP/HTTP trace receiver: decodes every export into a list of spans."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.spans: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/v1/traces":
            export = ExportTraceServiceRequest()
            export.ParseFromString(body)
            for resource in export.resource_spans:
                for scope in resource.scope_spans:
                    for span in scope.spans:
                        self.server.spans.append({
                            "name": span.name, "trace": span.trace_id.hex(),
                            "id": span.span_id.hex(), "parent": span.parent_span_id.hex(),
                            "attributes": {a.key: a.value.string_value or a.value.int_value
                                           for a in span.attributes}})
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def test_spans_per_request_and_hook_with_the_order_id(database_url: str, tmp_path: Path,
                                                      receiver: Receiver) -> None:
    env = {"ORDNUNG_TRACING": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
           "OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_SERVICE_NAME": "ordnung-test"}
    with running_server(database_url, tmp_path, "--demo", workers=1, env=env) as server, \
            httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as client:
        placed = client.post("/orders", json=order_body(("MUG", 1)))
        assert placed.status_code == 201
        order_id = placed.json()["id"]
        assert client.get(f"/orders/{order_id}").status_code == 200
        assert client.get("/orders", params={"limit": 7, "status": "placed"}).status_code == 200
        stop(server.process)  # the workers flush their spans as they stop

    spans = receiver.spans
    requests = [s for s in spans if not s["parent"] or s["name"].startswith(("POST", "GET"))]
    placing = next(s for s in requests if s["name"].startswith("POST /orders"))
    hooks = [s for s in spans if s["attributes"].get("ordnung.hook")]
    authorize = next(s for s in hooks if s["attributes"]["ordnung.hook"] == "ordnung_authorize")
    assert authorize["attributes"]["ordnung.plugin"] == "sandbox"
    assert authorize["attributes"]["ordnung.order_id"] == order_id
    assert authorize["trace"] == placing["trace"]  # a child of the placement's request
    assert {s["attributes"]["ordnung.hook"] for s in hooks
            if s["trace"] == placing["trace"]} >= {"ordnung_authorize", "ordnung_tax"}
    reading = next(s for s in requests if s["name"].startswith("GET /orders/"))
    assert reading["attributes"]["ordnung.order_id"] == order_id
    assert not any("limit=7" in str(v) for s in spans for v in s["attributes"].values())
