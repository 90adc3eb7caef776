"""``/metrics`` through a real server with two workers, read as Prometheus reads it.

The counters of both workers add up (prometheus-client's multiprocess mode): every
placement is counted once whichever worker took it.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.api_support import order_body
from tests.serve_support import ADMIN_KEY, running_server

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


def scrape(base_url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    answer = httpx.get(base_url + "/metrics", headers=AUTH, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def total(samples: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str,
          **labels: str) -> float:
    return sum(value for key, value in samples.get(name, {}).items()
               if set(labels.items()) <= set(key))


def test_metrics_add_up_over_workers(database_url: str, tmp_path: Path) -> None:
    with running_server(database_url, tmp_path, "--demo", workers=2) as server, \
            httpx.Client(base_url=server.base_url, headers=AUTH, timeout=30) as client:
        statuses = [client.post("/orders", json=order_body(("MUG", 1))).status_code
                    for _ in range(6)]
        declined = client.post("/orders", json=order_body(("MUG", 1), token="tok_decline"))
        short = client.post("/orders", json=order_body(("POSTER", 10_000)))
        anonymous = httpx.get(server.base_url + "/orders")
        unknown = client.get("/no/such/route")
        assert statuses == [201] * 6
        assert (declined.status_code, short.status_code) == (402, 409)
        assert (anonymous.status_code, unknown.status_code) == (401, 404)

        samples = scrape(server.base_url)

    assert total(samples, "ordnung_events_total", kind="order.placed") == 7  # 6 + declined
    assert total(samples, "ordnung_placement_attempts_total", outcome="placed") == 6
    assert total(samples, "ordnung_placement_attempts_total", outcome="declined") == 1
    assert total(samples, "ordnung_placement_attempts_total", outcome="out_of_stock") == 1
    assert total(samples, "ordnung_payments_total", outcome="authorized") == 6
    assert total(samples, "ordnung_payments_total", outcome="failed") == 1
    assert total(samples, "ordnung_http_requests_total", route="/orders", method="POST",
                 status="201") == 6
    assert total(samples, "ordnung_http_requests_total", route="/orders", status="401") == 1
    assert total(samples, "ordnung_http_requests_total", route="unmatched", status="404") == 1
    assert total(samples, "ordnung_http_request_duration_seconds_count", route="/orders",
                 method="POST") == 8
    assert "ordnung_outbox_backlog" in samples
    assert "ordnung_outbox_oldest_undelivered_seconds" in samples
    assert total(samples, "ordnung_reaction_failures_open") == 0
    assert total(samples, "ordnung_db_connections_open") >= 1


def test_metrics_need_a_key_with_the_metrics_scope(database_url: str, tmp_path: Path) -> None:
    with running_server(database_url, tmp_path, workers=1) as server, \
            httpx.Client(base_url=server.base_url, timeout=30) as client:
        assert client.get("/metrics").status_code == 401
        issued = client.post("/admin/keys", headers=AUTH,
                             json={"kind": "admin", "scopes": ["orders"]}).json()
        orders_only = {"Authorization": f"Bearer {issued['secret']}"}
        assert client.get("/metrics", headers=orders_only).status_code == 403
        assert client.get("/metrics", headers=AUTH).status_code == 200
