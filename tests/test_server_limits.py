"""The server's own limits, against a real ``ordnung serve`` over raw sockets.

Found: connections that never send (200 idle sockets, slowloris headers and bodies)
were never timed out, and an open order-event stream held ``SIGTERM`` shutdown for as
long as its client stayed (over 40 s). Now a request's headers must arrive within
``ORDNUNG_HEADER_TIMEOUT_SECONDS`` (408 if some of it came, else the connection is
closed), its body within ``ORDNUNG_BODY_TIMEOUT_SECONDS`` (408), an idle keep-alive
connection is closed after ``ORDNUNG_KEEP_ALIVE_TIMEOUT_SECONDS``, one worker serves
at most ``ORDNUNG_MAX_CONNECTIONS`` connections (503 beyond), and a stopped server
ends its event streams at once and exits within ``--shutdown-grace``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ordnung.api.settings import HttpSettings
from ordnung.core.errors import ConfigError
from tests.api_support import order_body
from tests.serve_support import ADMIN_KEY, Server, running_server

PROBLEM_BASE = "https://ordnung.dev/problems/"
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
HEADER_TIMEOUT = 1.0
KEEP_ALIVE = 1.0
BODY_TIMEOUT = 1.5
#: what a deadline may be late by on a loaded machine
SLACK = 2.5
LIMITS = {"ORDNUNG_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
          "ORDNUNG_KEEP_ALIVE_TIMEOUT_SECONDS": str(KEEP_ALIVE),
          "ORDNUNG_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT)}


def connect(server: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return sock


def closed_within(sock: socket.socket, seconds: float) -> tuple[float, bytes]:
    """Read until the server closes the socket; how long that took and what came."""
    started = time.monotonic()
    sock.settimeout(seconds)
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return time.monotonic() - started, data


def status_of(data: bytes) -> int:
    return int(data.split(b" ", 2)[1]) if data else 0


# ------------------------------------------------------------------ settings


def test_the_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDNUNG_HEADER_TIMEOUT_SECONDS", "2.5")
    monkeypatch.setenv("ORDNUNG_KEEP_ALIVE_TIMEOUT_SECONDS", "3")
    monkeypatch.setenv("ORDNUNG_MAX_CONNECTIONS", "50")
    monkeypatch.setenv("ORDNUNG_SHUTDOWN_GRACE_SECONDS", "0")
    settings = HttpSettings.from_env()
    assert (settings.header_timeout_seconds, settings.keep_alive_timeout_seconds,
            settings.max_connections, settings.shutdown_grace_seconds) == (2.5, 3.0, 50, 0.0)
    assert HttpSettings() == HttpSettings(header_timeout_seconds=10.0,
                                          keep_alive_timeout_seconds=5.0,
                                          max_connections=1000, shutdown_grace_seconds=10.0)
    for variable, bad in (("ORDNUNG_HEADER_TIMEOUT_SECONDS", "0"),
                          ("ORDNUNG_KEEP_ALIVE_TIMEOUT_SECONDS", "-1"),
                          ("ORDNUNG_MAX_CONNECTIONS", "0"),
                          ("ORDNUNG_MAX_CONNECTIONS", "many"),
                          ("ORDNUNG_SHUTDOWN_GRACE_SECONDS", "-5")):
        with monkeypatch.context() as patch:
            patch.setenv(variable, bad)
            with pytest.raises(ConfigError, match=variable):
                HttpSettings.from_env()


def test_serve_refuses_a_bad_limit_in_one_line(tmp_path: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ORDNUNG_")}
    environ["ORDNUNG_HEADER_TIMEOUT_SECONDS"] = "never"
    result = subprocess.run(
        [sys.executable, "-m", "ordnung.api.cli", "serve", "--port", "1",
         "--database-url", f"sqlite:///{tmp_path / 'x.db'}"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=environ)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "ORDNUNG_HEADER_TIMEOUT_SECONDS" in lines[0], result.stderr


# ------------------------------------------------- connections that never send


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    with running_server(database_url, tmp_path, "--demo", workers=1, env=LIMITS) as srv:
        yield srv


def test_a_connection_that_sends_nothing_is_closed(server: Server) -> None:
    sock = connect(server)
    try:
        took, data = closed_within(sock, HEADER_TIMEOUT + SLACK)
        assert data == b"" and took < HEADER_TIMEOUT + SLACK
    finally:
        sock.close()


def test_slowloris_headers_get_408_within_the_header_timeout(server: Server) -> None:
    """A byte of headers every 0.2 s keeps the connection busy but never completes."""
    sock = connect(server)
    head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200
    started = time.monotonic()
    answer = b""
    try:
        sock.settimeout(0.2)
        for byte in head:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break  # closed under us: read what was answered
            with contextlib.suppress(TimeoutError):
                answer += sock.recv(65536)
                if answer:
                    break
            if time.monotonic() - started > HEADER_TIMEOUT + SLACK:
                break
        took, rest = closed_within(sock, SLACK)
        answer += rest
        took = time.monotonic() - started
        assert status_of(answer) == 408, answer
        problem = json.loads(answer.partition(b"\r\n\r\n")[2])
        assert problem["type"] == PROBLEM_BASE + "request-timeout"
        assert took < HEADER_TIMEOUT + SLACK, took
    finally:
        sock.close()


def test_slowloris_body_gets_408_within_the_body_timeout(server: Server) -> None:
    body = json.dumps(order_body(("MUG", 1), email="slow@example.com")).encode()
    sock = connect(server)
    sock.sendall(b"POST /orders HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Authorization: Bearer " + ADMIN_KEY.encode() + b"\r\n"
                 b"Content-Type: application/json\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
    started = time.monotonic()
    answer = b""
    try:
        sock.settimeout(0.2)
        for byte in body[:-1]:
            with contextlib.suppress(OSError):
                sock.sendall(bytes([byte]))
            with contextlib.suppress(TimeoutError):
                answer += sock.recv(65536)
            if answer or time.monotonic() - started > BODY_TIMEOUT + SLACK:
                break
        _, rest = closed_within(sock, SLACK)
        answer += rest
        assert status_of(answer) == 408, answer
        assert time.monotonic() - started < BODY_TIMEOUT + SLACK + 0.5
    finally:
        sock.close()
    listed = httpx.get(server.base_url + "/orders", headers=AUTH).json()["items"]
    assert not [o for o in listed if o.get("email") == "slow@example.com"]


def test_an_idle_keep_alive_connection_is_closed(server: Server) -> None:
    sock = connect(server)
    try:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        sock.settimeout(5)
        first = sock.recv(65536)
        head, _, body = first.partition(b"\r\n\r\n")
        length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")))
        while len(body) < length:  # the whole answer, which may come in two segments
            body += sock.recv(65536)
        assert status_of(first) == 200
        took, rest = closed_within(sock, KEEP_ALIVE + SLACK)
        assert rest == b"" and took < KEEP_ALIVE + SLACK, took
    finally:
        sock.close()


def test_200_idle_sockets_do_not_block_a_normal_request(server: Server) -> None:
    idle = [connect(server) for _ in range(200)]
    try:
        time.sleep(0.2)
        started = time.monotonic()
        response = httpx.get(server.base_url + "/orders", headers=AUTH, timeout=5)
        assert response.status_code == 200
        assert time.monotonic() - started < 2
        # ... and the server lets go of them by itself
        for sock in idle:
            _, data = closed_within(sock, HEADER_TIMEOUT + SLACK)
            assert data == b"", data
    finally:
        for sock in idle:
            sock.close()


def test_beyond_the_connection_limit_a_request_gets_503_until_idle_ones_are_closed(
        database_url: str, tmp_path: Path) -> None:
    env = {**LIMITS, "ORDNUNG_MAX_CONNECTIONS": "20"}
    with running_server(database_url, tmp_path, workers=1, env=env) as server:
        idle = [connect(server) for _ in range(20)]  # the cap: the next one is too many
        try:
            time.sleep(0.2)
            crowded = httpx.get(server.base_url + "/health", timeout=5)
            assert crowded.status_code == 503, crowded.text
            assert crowded.json()["type"] == PROBLEM_BASE + "server-busy"
            assert int(crowded.headers["Retry-After"]) > 0
            time.sleep(HEADER_TIMEOUT + 1.0)  # the idle ones are closed by now
            assert httpx.get(server.base_url + "/health", timeout=5).status_code == 200
        finally:
            for sock in idle:
                sock.close()


# ------------------------------------------------------------------ shutdown


def place_order(server: Server) -> str:
    response = httpx.post(server.base_url + "/orders", headers=AUTH,
                          json=order_body(("MUG", 1), email="follow@example.com"), timeout=30)
    assert response.status_code == 201, response.text
    order_id: str = response.json()["id"]
    return order_id


def follow(server: Server, order_id: str, seen: list[str], ended: threading.Event,
           errors: list[BaseException]) -> None:
    """Read the order's event stream until the server ends it (an error, such as a
    connection cut mid-stream, is recorded)."""
    try:
        with httpx.stream("GET", f"{server.base_url}/orders/{order_id}/events",
                          headers=AUTH, timeout=httpx.Timeout(60.0)) as stream:
            for line in stream.iter_lines():
                seen.append(line)
    except httpx.HTTPError as exc:
        errors.append(exc)
    ended.set()


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_ends_an_open_event_stream_and_the_server_exits_in_time(
        database_url: str, tmp_path: Path, workers: int) -> None:
    grace = 3.0
    with running_server(database_url, tmp_path, "--demo", "--shutdown-grace", str(grace),
                        workers=workers, env=LIMITS) as server:
        order_id = place_order(server)
        seen: list[str] = []
        errors: list[BaseException] = []
        ended = threading.Event()
        reader = threading.Thread(target=follow, args=(server, order_id, seen, ended, errors),
                                  daemon=True)
        reader.start()
        deadline = time.monotonic() + 20
        while not any(line.startswith("event:") for line in seen):
            assert time.monotonic() < deadline, "the stream sent no event"
            time.sleep(0.05)
        assert not ended.is_set()
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(grace + 10)
        took = time.monotonic() - started
        assert ended.wait(5), "the stream was not ended"
        assert not errors, errors  # ended properly, not cut off
        assert took < grace + 2, (took, server.logs()[-2000:])
        assert "ASGI callable returned without completing response" not in server.logs()


def test_sigterm_cuts_off_a_request_that_outlives_the_grace(database_url: str,
                                                            tmp_path: Path) -> None:
    """A client that is still sending its body after the grace period does not hold the
    server (here the body timeout is far longer than the grace)."""
    grace = 1.0
    env = {**LIMITS, "ORDNUNG_BODY_TIMEOUT_SECONDS": "60"}
    with running_server(database_url, tmp_path, "--shutdown-grace", str(grace), workers=2,
                        env=env) as server:
        sock = connect(server)
        try:
            sock.sendall(b"POST /orders HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Authorization: Bearer " + ADMIN_KEY.encode() + b"\r\n"
                         b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
            time.sleep(0.5)
            started = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            server.process.wait(grace + 15)
            assert time.monotonic() - started < grace + SLACK + 1
        finally:
            sock.close()
