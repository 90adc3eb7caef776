"""GraphiQL at /graphql works in a real browser with no internet: the page loads its
assets from the package, runs a query with the caller's key and shows the answer, and
no request leaves the server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.browser_support import browser_page
from tests.serve_support import ADMIN_KEY, running_server


def test_graphiql_runs_a_query_offline(database_url: str, tmp_path: Path) -> None:
    with running_server(database_url, tmp_path, "--demo", workers=1) as server, \
            browser_page() as (page, requests):
        p: Any = page
        p.goto(server.base_url + "/graphql")  # a browser sends no key for the page
        button = p.locator(".graphiql-execute-button")
        button.wait_for(timeout=30_000)
        p.set_extra_http_headers({"Authorization": f"Bearer {ADMIN_KEY}"})
        button.click()
        p.wait_for_function(
            "() => (document.querySelector('.result-window') || {}).innerText"
            "?.includes('edges')", timeout=30_000)
        shown = p.inner_text(".result-window")
        assert '"products"' in shown and '"name"' in shown, shown
        assert requests.urls, "the browser recorded no request"
        assert requests.foreign() == [], requests.foreign()


def test_graphiql_page_alone_is_public(database_url: str, tmp_path: Path) -> None:
    """The page and its assets need no key; a query without one is refused (401)."""
    with running_server(database_url, tmp_path, workers=1) as server:
        url = server.base_url + "/graphql"
        page = httpx.get(url, headers={"Accept": "text/html"})
        assert page.status_code == 200 and "graphiql.min.js" in page.text
        assert "https://" not in page.text, "the page names a remote URL"
        asset = httpx.get(server.base_url + "/graphql/assets/graphiql.min.js")
        assert asset.status_code == 200 and "max-age" in asset.headers["cache-control"]
        for query in (httpx.get(url, params={"query": "{ __typename }"},
                                headers={"Accept": "text/html"}),
                      httpx.get(url, params={"query": "{ __typename }"}),
                      httpx.post(url, json={"query": "{ __typename }"},
                                 headers={"Accept": "text/html"})):
            assert query.status_code == 401, query.text
