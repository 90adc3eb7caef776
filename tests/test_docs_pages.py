"""The API documentation pages render in a real browser with no internet.

Found: ``/schema`` and ``/schema/swagger`` loaded their scripts from a CDN and stayed
blank without internet. The pages now load pinned assets shipped in the package; the
browser's request log proves that nothing leaves the server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser_support import browser_page
from tests.serve_support import running_server


@pytest.mark.parametrize("path", ["/schema", "/schema/swagger"])
def test_docs_page_renders_offline(path: str, database_url: str, tmp_path: Path) -> None:
    with running_server(database_url, tmp_path, workers=1) as server, \
            browser_page() as (page, requests):
        p: Any = page
        p.goto(server.base_url + path)
        # the rendered page: the API's title and its operations, drawn by the script
        p.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
        assert "ordnung" in p.inner_text(".swagger-ui .info .title")
        operations = p.locator(".opblock-summary-path")
        operations.first.wait_for(timeout=30_000)
        paths = set(operations.all_inner_texts())
        assert "/orders" in {t.replace("\u200b", "") for t in paths}
        assert operations.count() > 30
        assert requests.urls, "the browser recorded no request"
        assert requests.foreign() == [], requests.foreign()


def test_docs_assets_are_public_and_pinned(database_url: str, tmp_path: Path) -> None:
    """The assets need no key (a browser sends none) and are cacheable."""
    with running_server(database_url, tmp_path, workers=1) as server:
        answer = httpx.get(server.base_url + "/schema/assets/swagger-ui-bundle.js")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/javascript")
        assert "max-age" in answer.headers.get("cache-control", "")
        page = httpx.get(server.base_url + "/schema/swagger").text
        assert "https://" not in page.split("<body>")[0], "the page head names a remote URL"
