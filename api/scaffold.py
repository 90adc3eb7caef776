"""``ordnung new-plugin``: the template a plugin author starts from.

It writes a complete, installable package: ``pyproject.toml`` with the entry
point in group ``ordnung``, a plugin class with a ``Settings`` Struct and one
hook (a discount from a minimum subtotal), a README, and tests that run the
kit's conformance suite and a placement through a real Engine
(``ordnung.testing``). In an environment where ordnung is installed,
``pip install -e '.[test]' && mypy && pytest`` passes as written (``mypy`` runs
``--strict``: ordnung ships ``py.typed`` and the plugin API is typed).

ordnung itself is named as a dependency but installed first, from wherever the
author's ordnung came from (``install_hint``): the scaffold must not leave pip to
look for a distribution called ``ordnung`` on a package index.
"""

from __future__ import annotations

import json
import keyword
import re
import shlex
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from urllib.parse import unquote, urlparse

NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class ScaffoldError(ValueError):
    """The name or the target folder cannot be used."""


def normalize_name(raw: str) -> str:
    """``Acme-Bonus`` -> ``acme_bonus``: the entry-point and package name."""
    name = raw.strip().lower().replace("-", "_")
    if not NAME.match(name) or keyword.iskeyword(name):
        raise ScaffoldError(f"{raw!r} is not a usable plugin name: use lower-case letters, "
                            "digits and '_' or '-', starting with a letter (e.g. acme_bonus)")
    if name.startswith("kit_"):
        raise ScaffoldError("names starting with 'kit_' are reserved for the test kit's helpers")
    return name


def ordnung_source() -> str:
    """What ``pip install`` needs to install this ordnung again: the local folder or
    file it was installed from, or else the distribution name."""
    try:
        text = distribution("ordnung").read_text("direct_url.json")
    except PackageNotFoundError:
        return "ordnung"
    url = str(json.loads(text).get("url", "")) if text else ""
    if url.startswith("file://"):
        return unquote(urlparse(url).path)
    return url or "ordnung"


def install_hint(target: Path) -> str:
    """The commands that take a fresh virtual environment to green tests."""
    return (f"cd {shlex.quote(str(target))} && pip install {shlex.quote(ordnung_source())} "
            "&& pip install -e '.[test]' && mypy && pytest")


def class_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_") if part)


def files_for(name: str) -> dict[str, str]:
    """Relative path -> content of every file of the scaffold."""
    cls = class_name(name)
    dist = "ordnung-" + name.replace("_", "-")
    return {
        "pyproject.toml": PYPROJECT.format(name=name, cls=cls, dist=dist),
        "README.md": README.format(name=name, cls=cls, dist=dist),
        f"{name}/__init__.py": INIT.format(name=name, cls=cls),
        f"{name}/plugin.py": PLUGIN.format(name=name, cls=cls),
        "tests/test_plugin.py": TEST.format(name=name, cls=cls),
    }


def scaffold(raw_name: str, parent: Path) -> Path:
    """Write the plugin package ``<parent>/<name>/``; return its folder."""
    name = normalize_name(raw_name)
    target = parent / name
    if target.exists() and any(target.iterdir()):
        raise ScaffoldError(f"{target} exists and is not empty; choose another --dir or name")
    for relative, content in files_for(name).items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    return target


PYPROJECT = '''\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "An ordnung plugin: {name}"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["ordnung"]

[project.optional-dependencies]
test = ["pytest>=8", "mypy>=1.10"]

# The entry-point name is the plugin's name in ORDNUNG_PLUGINS and its settings.
[project.entry-points.ordnung]
{name} = "{name}.plugin:{cls}"

[tool.setuptools]
packages = ["{name}"]

[tool.pytest.ini_options]
testpaths = ["tests"]

[tool.mypy]
strict = true
files = ["{name}", "tests"]
'''

README = '''\
# {dist}

An ordnung plugin: `{name}` takes a percentage
off orders from a minimum subtotal. Rename, rewrite, keep the tests green.

```sh
pip install ordnung         # first: the ordnung this plugin is for (its folder or wheel)
pip install -e '.[test]'
mypy                        # --strict (pyproject.toml): ordnung's plugin API is typed
pytest                      # the kit's conformance suite and your own tests
ordnung plugins             # lists {name} with its hooks and settings
```

Import everything from ordnung through `ordnung.plugin` (`hookimpl`, the types the
hooks name, `PluginContext`): the core's own modules are not a stable API.

Enable it in a shop with `ORDNUNG_PLUGINS=...,{name}` and configure it with
`ORDNUNG_PLUGIN_SETTINGS='{{"{name}": {{"percent": 10, "min_subtotal": 5000}}}}'`.
Amounts are integers in minor units (`5000` is EUR 50.00).

The hooks a plugin can implement, and their contracts, are in ordnung's
`docs/hooks.md`; writing and testing a plugin in `docs/plugins.md`. Run the kit's
suites on PostgreSQL with `pytest --ordnung-database-url postgresql://...`.
'''

INIT = '''\
"""The {name} ordnung plugin."""

from {name}.plugin import {cls}

__all__ = ["{cls}"]
'''

PLUGIN = '''\
"""{cls}: a percentage off orders from a minimum subtotal."""

from __future__ import annotations

from fractions import Fraction

import msgspec

from ordnung.plugin import Discount, Money, Note, PricingContext, hookimpl


class {cls}:
    """Takes a percentage off orders from a minimum subtotal."""

    class Settings(msgspec.Struct, forbid_unknown_fields=True):
        #: whole percent off the subtotal
        percent: int = 5
        #: minimum subtotal, in minor units of the order's currency
        min_subtotal: int = 5000

    def __init__(self, settings: {cls}.Settings) -> None:
        self.settings = settings

    @hookimpl
    def ordnung_adjustments(self, ctx: PricingContext) -> list[Discount | Note]:
        s = self.settings
        if ctx.subtotal < s.min_subtotal:
            missing = Money(s.min_subtotal - ctx.subtotal, ctx.currency)
            return [Note(message=f"spend {{missing.format()}} more for {{s.percent}}% off")]
        amount = Money(ctx.subtotal, ctx.currency).scale(Fraction(s.percent, 100)).amount
        return [Discount(amount=amount, reason=f"{{s.percent}}% off from "
                                               f"{{Money(s.min_subtotal, ctx.currency).format()}}")]
'''

TEST = '''\
"""{cls}: the kit's conformance suite, and the plugin at work in a real Engine."""

from __future__ import annotations

from ordnung.testing import LoyaltyConformance, open_shop, run
from {name}.plugin import {cls}


class Test{cls}Conformance(LoyaltyConformance):
    plugin = {cls}
    name = "{name}"
    settings = {{"percent": 10, "min_subtotal": 5000}}


def test_the_discount_starts_at_the_minimum_subtotal(ordnung_shop_url: str) -> None:
    async def scenario() -> None:
        plugins = [({cls}, "{name}", {{"percent": 10, "min_subtotal": 5000}})]
        async with open_shop(plugins, database_url=ordnung_shop_url) as shop:
            small = await shop.place(("KIT-SHIRT", 1))  # EUR 25.00
            assert [a for a in small.adjustments if a.source == "{name}"] == []
            assert "spend EUR 25.00 more for 10% off" in [s.message for s in small.explanation]
            order = await shop.place(("KIT-SHIRT", 2))  # EUR 50.00
            [discount] = [a for a in order.adjustments if a.source == "{name}"]
            assert discount.amount == -500
            assert order.totals.discounts == -500

    run(scenario())
'''
