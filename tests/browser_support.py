"""Headless Chromium for tests that must see a page as a browser does.

Driven through Playwright's protocol client with the system's Chromium (Debian's
``chromium`` package): no browser is ever downloaded. Without Chromium the test is
skipped on a developer's machine, but fails where ``ORDNUNG_BROWSER_TESTS=required``
(CI sets it and installs Chromium), so a missing browser never passes silently.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest

#: the flags a root user in a container needs; background networking off so that the
#: browser itself makes no request the test would have to tell apart from the page's
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium_path() -> str:
    path = os.environ.get("ORDNUNG_CHROMIUM") or shutil.which("chromium") \
        or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("ORDNUNG_BROWSER_TESTS") == "required":
            pytest.fail("Chromium is required (ORDNUNG_BROWSER_TESTS=required) but not found")
        pytest.skip("no chromium on PATH (install Debian's chromium package)")
    return path


class PageRequests:
    """Every URL the page asked for, to prove that none left the server."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def foreign(self, host: str = "127.0.0.1") -> list[str]:
        return [u for u in self.urls
                if urlsplit(u).scheme not in ("data", "blob", "about")
                and urlsplit(u).hostname != host]


@contextmanager
def browser_page() -> Iterator[tuple[object, PageRequests]]:
    """A fresh headless page and the log of its requests."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True,
                                     args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            requests = PageRequests()
            page.on("request", lambda req: requests.urls.append(req.url))
            yield page, requests
        finally:
            browser.close()
