"""Request intake: every body is read whole and within limits before anything runs,
with or without an Idempotency-Key.

In process (ASGI) for what the app decides; against a real ``ordnung serve`` over raw
sockets for what only a real client can do: announce a huge body and send a little,
disconnect in the middle of a body, send a body byte by byte.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from ordnung.api.intake import json_too_deep
from ordnung.api.settings import MIB, HttpSettings
from ordnung.core.errors import ConfigError
from tests.api_support import (
    Api,
    api_fixture,  # noqa: F401  (the ``api`` fixture)
    expect_problem,
    order_body,
)
from tests.serve_support import ADMIN_KEY, Server, running_server

REPLAYED = "idempotent-replayed"
KEYED = [None, "intake-key"]


def with_key(headers: dict[str, str], key: str | None) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key} if key else dict(headers)


# ----------------------------------------------------------------- in process


@pytest.mark.parametrize("key", KEYED)
async def test_json_nested_too_deep_is_refused_before_decoding(api: Api, key: str | None
                                                               ) -> None:
    shop = await api.storefront("web")
    deep = b'{"channel": "web", "metadata": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = await api.client.post("/orders", content=deep, headers=with_key(
        {**shop, "Content-Type": "application/json"}, key))
    problem = expect_problem(response, 422, "validation")
    assert "deeper than 32" in problem["detail"]
    # brackets inside strings are text, not nesting
    body = order_body(("MUG", 1), metadata={"note": "[" * 1000 + "{" * 1000})
    placed = await api.client.post("/orders", json=body, headers=with_key(shop, key))
    assert placed.status_code == 201, placed.text
    assert await api.order_count() == 1


def test_the_depth_scan_counts_nesting_only() -> None:
    assert not json_too_deep(b'{"a": [[1], {"b": [2]}]}', 4)
    assert json_too_deep(b'{"a": [[1], {"b": [[2]]}]}', 4)
    assert not json_too_deep(b'{"a": "[[[[[[", "b": "\\"[[[["}', 2)
    assert not json_too_deep(b"[]" * 10_000, 1)


@pytest.mark.parametrize("key", KEYED)
async def test_a_body_over_the_limit_is_refused_413(api: Api, key: str | None) -> None:
    shop = await api.storefront("web")
    body = order_body(("MUG", 1), metadata={"blob": "x" * (MIB + 10)})
    response = await api.client.post("/orders", json=body, headers=with_key(shop, key))
    problem = expect_problem(response, 413, "request-too-large")
    assert str(MIB) in problem["detail"]

    # a streamed body without a Content-Length is counted as it comes
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(64):
            sent += 64 * 1024
            yield b" " * (64 * 1024)

    streamed = await api.client.post("/orders", content=chunks(), headers=with_key(
        {**shop, "Content-Type": "application/json"}, key))
    expect_problem(streamed, 413, "request-too-large")
    assert sent <= MIB + 64 * 1024  # it stopped reading once past the limit
    assert await api.order_count() == 0
    # the same key is free for the real request
    placed = await api.client.post("/orders", json=order_body(("MUG", 1)),
                                   headers=with_key(shop, key))
    assert placed.status_code == 201 and REPLAYED not in placed.headers, placed.text


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDNUNG_MAX_BODY_BYTES", "2048")
    monkeypatch.setenv("ORDNUNG_MAX_JSON_DEPTH", "8")
    monkeypatch.setenv("ORDNUNG_BODY_TIMEOUT_SECONDS", "2.5")
    assert HttpSettings.from_env() == HttpSettings(max_body_bytes=2048, max_json_depth=8,
                                                   body_timeout_seconds=2.5)
    monkeypatch.setenv("ORDNUNG_MAX_BODY_BYTES", "0")
    with pytest.raises(ConfigError, match="ORDNUNG_MAX_BODY_BYTES: Expected `int` >= 1"):
        HttpSettings.from_env()
    monkeypatch.setenv("ORDNUNG_MAX_BODY_BYTES", "1024")
    monkeypatch.setenv("ORDNUNG_BODY_TIMEOUT_SECONDS", "soon")
    with pytest.raises(ConfigError, match="ORDNUNG_BODY_TIMEOUT_SECONDS"):
        HttpSettings.from_env()


# ----------------------------------------------------------------- a real server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real server for this module's socket tests, with small limits."""
    tmp = tmp_path_factory.mktemp("intake")
    url = f"sqlite:///{tmp / 'intake.db'}"
    env = {"ORDNUNG_MAX_BODY_BYTES": str(256 * 1024), "ORDNUNG_BODY_TIMEOUT_SECONDS": "1.5"}
    with running_server(url, tmp, "--demo", workers=1, env=env) as srv:
        yield srv


def raw_request(server: Server, body_length: int, key: str | None = None,
                extra: str = "") -> socket.socket:
    """A socket that has sent a POST /orders's headers, announcing ``body_length``."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    head = (f"POST /orders HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {ADMIN_KEY}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {body_length}\r\n{extra}")
    if key:
        head += f"Idempotency-Key: {key}\r\n"
    sock.sendall((head + "\r\n").encode())
    return sock


def read_answer(sock: socket.socket) -> tuple[int, dict[str, Any]]:
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def orders(server: Server) -> list[dict[str, Any]]:
    response = httpx.get(server.base_url + "/orders",
                         headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    items: list[dict[str, Any]] = response.json()["items"]
    return items


@pytest.mark.parametrize("key", KEYED)
def test_a_huge_announced_body_is_refused_before_it_is_read(server: Server,
                                                           key: str | None) -> None:
    sock = raw_request(server, 200 * MIB, key)
    try:
        sock.sendall(b"{" + b" " * 65_535)
        started = time.monotonic()
        status, problem = read_answer(sock)
        assert (status, problem["type"]) == (
            413, "https://ordnung.dev/problems/request-too-large"), problem
        assert time.monotonic() - started < 5
    finally:
        sock.close()


@pytest.mark.parametrize("key", KEYED)
def test_a_client_that_disconnects_mid_body_has_sent_no_request(server: Server,
                                                               key: str | None) -> None:
    """The part sent is a whole, valid order (the rest would have been spaces): run on
    what arrived, it would place an order."""
    before = len(orders(server))
    body = json.dumps(order_body(("MUG", 1), email=f"cut-{key}@example.com")).encode()
    sock = raw_request(server, len(body) + 100, key)
    sock.sendall(body)
    time.sleep(0.3)
    sock.close()
    time.sleep(0.5)
    assert len(orders(server)) == before
    # the whole request with the same key is a first request, neither refused nor replayed
    whole = httpx.post(server.base_url + "/orders", content=body + b" " * 100, headers=with_key(
        {"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"}, key))
    assert whole.status_code == 201, whole.text
    assert REPLAYED not in whole.headers
    assert len(orders(server)) == before + 1


@pytest.mark.parametrize("key", KEYED)
def test_a_body_that_trickles_in_times_out_408(server: Server, key: str | None) -> None:
    body = json.dumps(order_body(("MUG", 1), email="slow@example.com")).encode()
    before = len(orders(server))
    sock = raw_request(server, len(body), key)
    try:
        started = time.monotonic()
        sent = 0
        answer: tuple[int, dict[str, Any]] | None = None
        sock.settimeout(0.2)
        while sent < len(body) - 1 and time.monotonic() - started < 10:
            try:
                sock.sendall(body[sent:sent + 1])
            except OSError:
                break
            sent += 1
            try:
                if sock.recv(1, socket.MSG_PEEK):
                    break
            except TimeoutError:
                continue
        sock.settimeout(10)
        answer = read_answer(sock)
        elapsed = time.monotonic() - started
        assert answer[0] == 408, answer
        assert answer[1]["type"] == "https://ordnung.dev/problems/request-timeout"
        assert 1.0 < elapsed < 6, elapsed
    finally:
        sock.close()
    assert len(orders(server)) == before
