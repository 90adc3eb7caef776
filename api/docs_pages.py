"""The API documentation pages, served with no request leaving the server.

litestar's render plugins load Swagger UI from a CDN by default, so the pages are
blank on a machine without internet (an air-gapped shop, a laptop on a train). The
pinned Swagger UI files ship inside the package (``static/docs``, with their licence)
and are served under ``/schema/assets``; the pages point there. One viewer serves both
``/schema`` and ``/schema/swagger`` so that there is one set of assets to keep current.
"""

from __future__ import annotations

from pathlib import Path

from litestar.datastructures import CacheControlHeader
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.router import Router
from litestar.static_files import create_static_files_router

#: the Swagger UI release whose files are in ``static/docs`` (swagger-ui-dist on npm)
SWAGGER_UI_VERSION = "5.18.2"
ASSETS_DIR = Path(__file__).parent / "static" / "docs"
ASSETS_PATH = "/schema/assets"
#: an empty icon: browsers would otherwise ask for /favicon.ico or litestar's CDN badge
NO_FAVICON = "<link rel='icon' href='data:,'>"


def docs_render_plugins() -> list[SwaggerRenderPlugin]:
    return [SwaggerRenderPlugin(
        version=SWAGGER_UI_VERSION,
        js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        css_url=f"{ASSETS_PATH}/swagger-ui.css",
        standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
        path=["/", "/swagger"],
        favicon=NO_FAVICON,
    )]


def docs_assets_router() -> Router:
    """The asset files, cacheable for a day (their names carry no version: a new
    release of ordnung may change them)."""
    return create_static_files_router(
        path=ASSETS_PATH, directories=[ASSETS_DIR], include_in_schema=False,
        cache_control=CacheControlHeader(max_age=86400), name="docs-assets",
        opt={"exclude_from_auth": True})
