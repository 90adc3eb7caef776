"""The built-in plugins use the plugin API as a third-party plugin must.

They import ordnung only through ``ordnung.plugin`` (never the core's internal modules),
and never another plugin's module: a plugin's internals (its store, its types) are its
own. Modules under plugins/ that no entry point names (``carriers/labels.py``,
``carriers/transit.py``, ``payments/cards.py``) are helpers those plugins share, as a
third-party package may have its own.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[1]
PLUGINS = ROOT / "plugins"


def entry_point_modules() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return {target.split(":")[0] for target in project["project"]["entry-points"]["ordnung"]
            .values()}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return "ordnung." + ".".join(p for p in parts if p != "__init__")


def imported_modules(path: Path) -> list[str]:
    out: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
        elif isinstance(node, ast.Import):
            out.extend(alias.name for alias in node.names)
    return out


def test_plugins_import_the_core_only_through_ordnung_plugin() -> None:
    offenders = [f"{path.relative_to(ROOT)}: {module}"
                 for path in sorted(PLUGINS.rglob("*.py"))
                 for module in imported_modules(path)
                 if module == "ordnung.core" or module.startswith("ordnung.core.")]
    assert not offenders, "import these through ordnung.plugin:\n" + "\n".join(offenders)


def test_no_plugin_imports_another_plugins_module() -> None:
    plugin_modules = entry_point_modules()
    assert "ordnung.plugins.loyalty.coupons" in plugin_modules
    offenders = []
    for path in sorted(PLUGINS.rglob("*.py")):
        own = module_name(path)
        for module in imported_modules(path):
            if module in plugin_modules and module != own:
                offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not offenders, "\n".join(offenders)


def test_ordnung_plugin_exports_every_type_a_hook_names() -> None:
    import typing

    import ordnung.plugin as api
    from ordnung.core.hook_contracts import contracts

    def named(tp: object) -> set[type]:
        cls = typing.get_origin(tp) or tp
        found = ({cls} if isinstance(cls, type) and cls.__module__.startswith("ordnung.")
                 else set())
        for arg in typing.get_args(tp):
            found |= named(arg)
        return found

    missing = set()
    for c in contracts().values():
        for tp in typing.get_type_hints(c.spec).values():
            for cls in named(tp):
                if getattr(api, cls.__name__, None) is not cls:
                    missing.add(f"{cls.__name__} ({c.name})")
    assert not missing, f"ordnung.plugin does not export {sorted(missing)}"
    assert api.hookimpl is not None and set(api.__all__) <= set(dir(api))


def test_the_distribution_ships_py_typed() -> None:
    for folder in ("core", "plugin", "plugins", "testing", "api"):
        assert (ROOT / folder / "py.typed").is_file(), folder
