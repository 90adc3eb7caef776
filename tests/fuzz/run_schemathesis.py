"""Fuzz the REST or the GraphQL API with schemathesis against a real ``ordnung serve``.

Starts ``ordnung serve --demo --workers 1`` on a fresh database (SQLite in a
temporary folder, or a throw-away PostgreSQL database), with the bootstrap admin
key of ``tests.serve_support`` (every scope). Over the API it then places a few
orders in different states (awaiting payment, paid, shipping, delivered with a
return), a cart and a customer, so that the fuzzer reaches real resources and
not only 404s: their ids and the demo shop's SKUs, locations and channels are
handed to schemathesis as dictionaries it draws parameter values from. Then it
runs ``schemathesis run`` against ``/schema/openapi.json`` with that key, stops
the server and exits with schemathesis's status (or 1 if the server did not
stop cleanly).

Checks: no 5xx answer, and every answer's status code, content type and body
conform to the OpenAPI document. The seed is fixed so a run can be repeated;
vary it with ``--seed`` or ``ORDNUNG_FUZZ_SEED`` to explore further::

    python -m tests.fuzz.run_schemathesis                        # SQLite
    python -m tests.fuzz.run_schemathesis --db postgres --max-examples 8
    python -m tests.fuzz.run_schemathesis --seed 7 -- --max-failures 3

``--api graphql`` fuzzes ``/graphql`` instead, found by introspection: every query
and mutation field with ``--max-examples`` random cases (the fuzzing phase only), with
the checks of ``tests.fuzz.graphql_checks`` — no 5xx, no GraphQL error that would be a
5xx in REST, no Python traceback in an answer::

    python -m tests.fuzz.run_schemathesis --api graphql --max-examples 30

Arguments after ``--`` go to ``schemathesis run`` as they are. PostgreSQL
runs create and drop their database through ``ORDNUNG_TEST_PG_ADMIN_URL``
(default ``postgresql://postgres@127.0.0.1:5432/postgres``), like the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.databases import fresh_pg_database
from tests.serve_support import ADMIN_KEY, running_server

DEFAULT_SEED = 1
DEFAULT_EXAMPLES = 20
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance")
BERLIN = {"name": "Erika Mustermann", "line1": "Heidestraße 17", "city": "Berlin",
          "postal_code": "51147", "country": "DE"}


# --------------------------------------------------------------------------- database


@contextmanager
def database(kind: str, folder: Path) -> Iterator[str]:
    """The URL of a fresh, empty database, removed afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'fuzz.db'}"
        return
    with fresh_pg_database("ordnung_fuzz") as url:
        yield url


# --------------------------------------------------------------------------- seed data


def seed(base_url: str, admin_key: str) -> dict[str, list[str]]:
    """Resources in different states, over the API; their ids by dictionary name."""
    headers = {"Authorization": f"Bearer {admin_key}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30.0) as client:

        def call(method: str, path: str, body: Any = None, status: int = 200) -> Any:
            response = client.request(method, path, json=body)
            if response.status_code != status:
                raise RuntimeError(f"seeding: {method} {path} answered "
                                   f"{response.status_code}: {response.text}")
            return response.json() if response.content else None

        def place(*lines: tuple[str, int], token: str = "tok_success") -> dict[str, Any]:
            return call("POST", "/orders", {
                "channel": "web", "email": "erika@example.com",
                "lines": [{"sku": sku, "quantity": qty} for sku, qty in lines],
                "shipping_address": BERLIN, "shipping_method": "flat_rate:standard",
                "payment": {"gateway": "sandbox", "token": token}}, 201)

        customer = call("POST", "/customers", {"email": "kim@example.com", "name": "Kim"}, 201)
        keys = [call("POST", "/admin/keys", {"kind": "storefront", "channel": "web",
                                             "name": f"fuzz {n}"}, 201)["key"]["id"]
                for n in range(3)]

        awaiting = place(("MUG", 1), token="tok_async")
        paid = place(("SHIRT-M", 1))
        shipping = place(("SHIRT-L", 1), ("MUG", 1))
        oid = shipping["id"]
        call("POST", f"/orders/{oid}/payments/capture", {})
        shipping = call("POST", f"/orders/{oid}/shipments", {}, 201)
        picked = shipping["shipments"][0]["id"]
        call("POST", f"/orders/{oid}/shipments/{picked}/pick", {})

        delivered = place(("POSTER", 1), ("SHIRT-M", 2))
        oid = delivered["id"]
        call("POST", f"/orders/{oid}/payments/capture", {})
        delivered = call("POST", f"/orders/{oid}/shipments", {}, 201)
        shipment = delivered["shipments"][0]
        base = f"/orders/{oid}/shipments/{shipment['id']}"
        call("POST", f"{base}/pick", {})
        scans = [line["sku"] for line in shipment["lines"] for _ in range(line["quantity"])]
        call("POST", f"{base}/pack", {"scans": scans})
        shipped = call("POST", f"{base}/ship", {})["shipments"][0]
        call("POST", f"{base}/deliver", {})
        line_id = next(line["id"] for line in delivered["lines"] if line["sku"] == "SHIRT-M")
        delivered = call("POST", f"/orders/{oid}/returns",
                         {"lines": [{"line_id": line_id, "quantity": 1}], "reason": "too big"},
                         201)

        cart = call("POST", "/carts", {"channel": "web", "email": "kim@example.com"}, 201)
        call("POST", f"/carts/{cart['id']}/lines", {"sku": "SHIRT-M", "quantity": 1})
        call("PUT", f"/carts/{cart['id']}/addresses", {"shipping": BERLIN})

        orders = [awaiting, paid, shipping, delivered]
        return {
            "order_ids": [o["id"] for o in orders],
            "order_numbers": [o["number"] for o in orders],
            "line_ids": [line["id"] for o in orders for line in o["lines"]],
            "shipment_ids": [s["id"] for o in orders for s in o.get("shipments", [])],
            "return_ids": [r["id"] for r in delivered.get("returns", [])],
            "tracking_numbers": [shipped["tracking_number"]],
            "carriers": ["flat_rate", "store_pickup"],
            "gateways": ["sandbox", "manual"],
            "payment_tokens": ["tok_success", "tok_async", "tok_decline"],
            "shipping_methods": ["flat_rate:standard"],
            "cart_ids": [cart["id"]],
            "customer_ids": [customer["id"]],
            "key_ids": keys,
            "skus": ["SHIRT-M", "SHIRT-L", "MUG", "POSTER", "GIFT-TOTE"],
            "product_ids": ["shirt", "mug", "poster", "tote"],
            "location_ids": ["wh-berlin", "wh-leipzig"],
            "channels": ["web", "etsy", "ebay", "pos"],
            "countries": ["DE", "AT", "FR", "US"],
            "currencies": ["EUR", "USD"],
        }


# --------------------------------------------------------------------------- configuration

#: where schemathesis draws values from a dictionary (with this probability; otherwise it
#: generates one from the schema as usual, which exercises the 404 and 422 answers)
BINDINGS: dict[str, tuple[str, float]] = {
    "path.order_id": ("order_ids", 0.8),
    "path.number": ("order_numbers", 0.8),
    "path.shipment_id": ("shipment_ids", 0.8),
    "path.return_id": ("return_ids", 0.8),
    "path.cart_id": ("cart_ids", 0.8),
    "path.customer_id": ("customer_ids", 0.8),
    "path.product_id": ("product_ids", 0.8),
    "path.location_id": ("location_ids", 0.8),
    "path.channel_id": ("channels", 0.8),
    "path.sku": ("skus", 0.8),
    "path.gateway": ("gateways", 0.8),
    "path.carrier": ("carriers", 0.8),
    "path.tracking_number": ("tracking_numbers", 0.8),
    # only keys issued for the fuzzer: revoking its own admin key would leave every later
    # request unauthenticated
    "path.key_id": ("key_ids", 1.0),
    "query.location_id": ("location_ids", 0.7),
    "query.channel": ("channels", 0.7),
    "query.customer_id": ("customer_ids", 0.7),
    "query.order_id": ("order_ids", 0.7),
    "body.sku": ("skus", 0.7),
    "body.lines[*].sku": ("skus", 0.7),
    "body.lines[*].line_id": ("line_ids", 0.7),
    "body.location_id": ("location_ids", 0.7),
    "body.channel": ("channels", 0.7),
    "body.gateway": ("gateways", 0.7),
    "body.payment.gateway": ("gateways", 0.7),
    "body.payment.token": ("payment_tokens", 0.7),
    "body.token": ("payment_tokens", 0.7),
    "body.shipping_method": ("shipping_methods", 0.7),
    "body.method": ("shipping_methods", 0.3),
    "body.customer_id": ("customer_ids", 0.3),
    "body.currency": ("currencies", 0.7),
    "body.shipping_address.country": ("countries", 0.7),
    "body.shipping.country": ("countries", 0.7),
}


def toml_value(value: Any) -> str:
    """A TOML value for strings, numbers, booleans and lists of them (JSON's escapes for
    strings are TOML's)."""
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def write_config(path: Path, data: dict[str, list[str]]) -> None:
    lines = ["[parameters]"]
    for key, (dictionary, probability) in BINDINGS.items():
        if data.get(dictionary):
            lines.append(f"{toml_value(key)} = {{ dictionary = {toml_value(dictionary)}, "
                         f"probability = {probability} }}")
    for name, values in data.items():
        if values:
            lines += ["", f"[dictionaries.{name}]", f"values = {toml_value(values)}"]
    lines += [
        "",
        # a live-status stream stays open until the order is finished (or for minutes):
        # read one event, or what came within two seconds
        "[[operations]]",
        'include-path = "/orders/{order_id}/events"',
        "max-stream-events = 1",
        "request-timeout = 2",
        "",
        # elsewhere `sku` is a list
        "[[operations]]",
        'include-path = "/inventory/movements"',
        'parameters = { "query.sku" = { dictionary = "skus", probability = 0.7 } }',
        "",
        # GET /admin/keys lists the fuzzer's own admin key, and revoking it would leave
        # every later request unauthenticated: only the dictionary's keys are revoked, not
        # ids taken from earlier responses or followed along links
        "[[operations]]",
        'include-path = "/admin/keys/{key_id}"',
        'include-method = "DELETE"',
        "phases.stateful.enabled = false",
        "phases.fuzzing.extra-data-sources.responses = false",
        "phases.coverage.extra-data-sources.responses = false",
    ]
    path.write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- main


def key_still_works(base_url: str, admin_key: str) -> bool:
    response = httpx.get(base_url + "/admin/keys", timeout=30.0,
                         headers={"Authorization": f"Bearer {admin_key}"})
    return response.status_code == 200


def schemathesis_command(config: Path, base_url: str, admin_key: str, *, examples: int,
                         seed_value: int, extra: Sequence[str]) -> list[str]:
    executable = Path(sys.executable).with_name("schemathesis")
    return [
        str(executable), "--config-file", str(config), "run",
        f"{base_url}/schema/openapi.json",
        "--header", f"Authorization: Bearer {admin_key}",
        "--checks", ",".join(CHECKS),
        "--max-examples", str(examples),
        "--seed", str(seed_value),
        "--workers", "1",
        "--request-timeout", "20",
        "--generation-database", "none",  # no replay of earlier runs: same seed, same run
        *extra,
    ]


#: GraphQL: a bounded run. Every query and mutation field is one operation (over 80);
#: only the random fuzzing runs (schemathesis has no examples or coverage phase for
#: GraphQL), each field with ``--max-examples`` cases. No ``--max-time``: with it,
#: schemathesis repeats the fuzzing until the time is spent.
GRAPHQL_CHECKS = ("no_server_failure", "no_python_traceback")
GRAPHQL_PHASES = "fuzzing"


def graphql_command(base_url: str, admin_key: str, *, examples: int, seed_value: int,
                    extra: Sequence[str]) -> list[str]:
    """``schemathesis run`` against ``/graphql`` with the checks of ``graphql_checks``.

    The fuzzer's own key must not be revoked (every later answer would be a 401):
    ``revokeKey`` is left out."""
    executable = Path(sys.executable).with_name("schemathesis")
    return [
        str(executable), "run", f"{base_url}/graphql",
        "--header", f"Authorization: Bearer {admin_key}",
        "--checks", ",".join(GRAPHQL_CHECKS),
        "--phases", GRAPHQL_PHASES,
        "--max-examples", str(examples),
        "--exclude-name-regex", "revokeKey",
        "--seed", str(seed_value),
        "--workers", "1",
        "--request-timeout", "20",
        "--generation-database", "none",
        *extra,
    ]


def graphql_environment() -> dict[str, str]:
    """The environment that loads the GraphQL checks into schemathesis."""
    root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path,
            "SCHEMATHESIS_HOOKS": "tests.fuzz.graphql_checks"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fuzz.run_schemathesis",
        description="Fuzz the REST API of a real `ordnung serve` with schemathesis.")
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--api", choices=["rest", "graphql"], default="rest",
                        help="REST (the OpenAPI document) or GraphQL (/graphql, "
                             "by introspection)")
    parser.add_argument("--max-examples", type=int, default=DEFAULT_EXAMPLES,
                        help="test cases per operation (default %(default)s)")
    parser.add_argument("--seed", type=int,
                        default=int(os.environ.get("ORDNUNG_FUZZ_SEED", DEFAULT_SEED)),
                        help="schemathesis's random seed (default %(default)s, "
                             "or ORDNUNG_FUZZ_SEED)")
    parser.add_argument("extra", nargs="*", help="further `schemathesis run` arguments "
                                                 "(after --)")
    args = parser.parse_args(argv)

    started = time.monotonic()
    stopped: int | None = None
    log = ""
    with tempfile.TemporaryDirectory(prefix="ordnung-fuzz-") as tmp:
        folder = Path(tmp)
        with database(args.db, folder) as url:
            try:
                with running_server(url, folder, "--demo", "--log-json", "--log-level",
                                    "warning", workers=1) as server:
                    data = seed(server.base_url, ADMIN_KEY)
                    environment: dict[str, str] | None = None
                    if args.api == "graphql":
                        command = graphql_command(
                            server.base_url, ADMIN_KEY, examples=args.max_examples,
                            seed_value=args.seed, extra=args.extra)
                        environment = graphql_environment()
                    else:
                        config = folder / "schemathesis.toml"
                        write_config(config, data)
                        command = schemathesis_command(
                            config, server.base_url, ADMIN_KEY, examples=args.max_examples,
                            seed_value=args.seed, extra=args.extra)
                    print(f"fuzzing {args.api} on {args.db}: {args.max_examples} examples "
                          f"per operation, seed {args.seed}", flush=True)
                    status = subprocess.run(command, cwd=folder, env=environment,
                                            check=False).returncode
                    if not key_still_works(server.base_url, ADMIN_KEY):
                        print("the fuzzer's admin key stopped working during the run: every "
                              "answer after that was a 401, and the run proves little",
                              flush=True)
                        status = status or 1
                stopped = server.process.returncode
                log = server.logs()
            except (pytest.fail.Exception, RuntimeError, httpx.HTTPError) as exc:
                # the server did not start, or seeding it failed
                print(f"could not start fuzzing: {exc}", flush=True)
                return 1
    errors = [line for line in log.splitlines() if '"level": "error"' in line
              or "Traceback" in line]
    if errors:
        print(f"the server logged {len(errors)} error(s); the first ones:", *errors[:10],
              sep="\n")
    # one uvicorn worker re-raises the SIGTERM it handled once it has shut down
    if stopped not in (0, -signal.SIGTERM):
        print(f"ordnung serve did not stop cleanly (exit status {stopped}):\n{log[-4000:]}")
        status = status or 1
    print(f"schemathesis ({args.api}) on {args.db}: exit {status} "
          f"after {time.monotonic() - started:.0f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
