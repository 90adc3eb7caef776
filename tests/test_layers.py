"""The layers import downwards only, as CONTRIBUTING.md ("The layers") describes.

``core`` is the heart: no web framework, no vendor, and none of the layers built on it.
``plugin`` is the plugin API over the core; ``plugins`` reach the core only through it
(``tests/test_plugin_imports.py``); ``api`` adapts the core to HTTP and never reaches
into a plugin's module: what it needs of a plugin it asks through a hook.
"""

from __future__ import annotations

from pathlib import Path

from tests.test_plugin_imports import ROOT, imported_modules

#: what the core must never import: the layers above it, the web and GraphQL stacks,
#: and the vendors' libraries the built-in plugins use
CORE_MUST_NOT = ("ordnung.api", "ordnung.plugins", "ordnung.testing", "litestar",
                 "strawberry", "graphql", "uvicorn", "starlette", "nats", "aiosmtplib",
                 "reportlab", "stdnum", "prometheus_client", "opentelemetry")


def imports_under(folder: str) -> list[tuple[Path, str]]:
    return [(path, module) for path in sorted((ROOT / folder).rglob("*.py"))
            for module in imported_modules(path)]


def offends(module: str, banned: tuple[str, ...]) -> bool:
    return any(module == b or module.startswith(b + ".") for b in banned)


def test_the_core_imports_no_framework_no_vendor_and_no_layer_above_it() -> None:
    found = imports_under("core")
    assert any(module.startswith("ordnung.core") for _, module in found)
    offenders = [f"{path.relative_to(ROOT)}: {module}" for path, module in found
                 if offends(module, CORE_MUST_NOT)]
    assert not offenders, "\n".join(offenders)


def test_the_plugin_api_and_the_migrations_stand_on_the_core_alone() -> None:
    offenders = [f"{path.relative_to(ROOT)}: {module}"
                 for folder in ("plugin", "migrations")
                 for path, module in imports_under(folder)
                 if offends(module, ("ordnung.api", "ordnung.plugins", "ordnung.testing",
                                     "litestar", "strawberry"))]
    assert not offenders, "\n".join(offenders)


def test_the_api_asks_plugins_through_hooks_and_never_imports_their_modules() -> None:
    offenders = [f"{path.relative_to(ROOT)}: {module}"
                 for path, module in imports_under("api")
                 if offends(module, ("ordnung.plugins",))]
    assert not offenders, "\n".join(offenders)
