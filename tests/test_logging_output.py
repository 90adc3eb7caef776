"""What an operator and an embedding developer see in the logs.

Found: with ``--log-json`` uvicorn's and piccolo's lines were plain text; a 401 was
logged as a 500; a path no route matches was not logged at all; neither answer
carried ``x-request-id``; and a script embedding the Engine printed lines to stdout
although it never asked for logs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx

from tests.serve_support import running_server, stop


def test_log_json_makes_every_line_json_with_true_statuses(database_url: str,
                                                           tmp_path: Path) -> None:
    with running_server(database_url, tmp_path, "--log-json", workers=2) as server:
        unknown = httpx.get(server.base_url + "/no/such/route")
        unauthorised = httpx.get(server.base_url + "/orders",
                                 headers={"x-request-id": "client-chosen-17"})
        stop(server.process)
        logs = server.logs()
    assert unknown.status_code == 404 and unauthorised.status_code == 401
    assert unauthorised.headers["x-request-id"] == "client-chosen-17"
    unknown_id = unknown.headers["x-request-id"]
    assert unknown_id

    entries = []
    for line in logs.splitlines():
        assert line.startswith("{"), f"not a JSON line: {line!r}"
        entries.append(json.loads(line))
    loggers = {e.get("logger") for e in entries}
    assert "uvicorn.error" in loggers  # the server's own lines too
    requests = {e["request_id"]: e for e in entries if e["event"] == "request"}
    assert requests[unknown_id]["status"] == 404
    assert requests[unknown_id]["path"] == "/no/such/route"
    assert requests["client-chosen-17"]["status"] == 401


EMBEDDED = """
import asyncio, logging, sys
from ordnung.core import Engine, EngineConfig

if sys.argv[2] == "configured":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)

async def main() -> None:
    async with Engine(EngineConfig(database_url=sys.argv[1], load_entry_points=False)) as engine:
        assert engine is not None

asyncio.run(main())
"""


def _embedded(tmp_path: Path, mode: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "embed.py"
    script.write_text(EMBEDDED)
    url = f"sqlite:///{tmp_path / f'embedded-{mode}.db'}"
    return subprocess.run([sys.executable, str(script), url, mode], capture_output=True,
                          text=True, timeout=120, check=True, cwd=tmp_path)


def test_the_embedded_engine_is_quiet_until_logging_is_configured(tmp_path: Path) -> None:
    quiet = _embedded(tmp_path, "quiet")
    assert quiet.stdout == "" and quiet.stderr == ""
    configured = _embedded(tmp_path, "configured")
    assert configured.stdout == ""
    assert "engine started" in configured.stderr
    assert "migrations applied" in configured.stderr
