"""The ``ordnung`` command line as a user sees it, and the hook reference (docs/hooks.md)."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from ordnung.api.cli import main
from ordnung.api.hooks_doc import BEGIN, END, hook_table, with_hook_table
from ordnung.core import Address, Engine, hookimpl
from ordnung.core import hookspecs as hookspecs_module
from ordnung.core.errors import TransitionVetoed
from ordnung.core.plugin_host import PluginHost
from tests.support import builtin_plugins, order_request, seed_shop

HOOKS_DOC = Path(__file__).parents[1] / "docs" / "hooks.md"
ORDER_NUMBER = re.compile(r"\bORD-[A-Z0-9]{4}-[A-Z0-9]{4}\b")
BUILTIN = ("sandbox", "manual", "flat_rate", "table_tax", "free_gift", "channel_log")


@pytest.fixture(autouse=True)
def _no_env_database(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands read ORDNUNG_DATABASE_URL; a developer's own must not leak in."""
    monkeypatch.delenv("ORDNUNG_DATABASE_URL", raising=False)


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "ORDNUNG_DATABASE_URL"}


# --------------------------------------------------------------------------- demo


def found(pattern: str, text: str, group: int = 1) -> str:
    match = re.search(pattern, text)
    assert match is not None, f"{pattern!r} not in output:\n{text}"
    return match.group(group)


def assert_demo_output(out: str) -> None:
    assert ORDER_NUMBER.search(out), out
    assert "How it was priced" in out
    assert "free tote bag" in out  # the free_gift plugin's line, from its entry-point settings
    assert "Timeline" in out
    for kind in ("order.placed", "payment.captured", "shipment.packed", "shipment.shipped",
                 "shipment.delivered", "return.requested", "return.received",
                 "return.refunded"):
        assert kind in out, kind
    assert re.search(r"total\s+€\d+\.\d\d", out)  # money as people write it (CLDR)
    assert "Stock" in out
    assert "[info" not in out and "engine started" not in out  # no logs on stdout


def test_demo_runs_on_the_default_file_in_the_current_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["demo"]) == 0
    first = capsys.readouterr().out
    assert_demo_output(first)
    assert (tmp_path / "ordnung-demo.db").exists()
    # repeatable: the default demo file starts fresh each run
    assert main(["demo"]) == 0
    second = capsys.readouterr().out
    assert_demo_output(second)
    assert found(r"Timeline \((\d+) events", first) == found(r"Timeline \((\d+) events", second)
    stock = first[first.index("\nStock"):]
    assert stock.splitlines()[:6] == second[second.index("\nStock"):].splitlines()[:6]


def test_demo_prints_the_order_and_what_happened(
        database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """On the test database (SQLite or PostgreSQL, as the suite runs)."""
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--database-url", database_url]) == 0
    out = capsys.readouterr().out
    assert_demo_output(out)
    number = found(ORDER_NUMBER.pattern, out, group=0)
    assert f"Order {number}" in out
    assert "partially_returned" in out
    # one shirt came back and was restocked: 100 received, 2 sold, 1 returned
    assert re.search(r"SHIRT-M\s+wh1\s+99\s+0\s+99", out)
    assert not (tmp_path / "ordnung-demo.db").exists()


def test_demo_reads_the_database_url_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ORDNUNG_DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    assert main(["demo"]) == 0
    assert_demo_output(capsys.readouterr().out)
    assert (tmp_path / "env.db").exists()
    assert not (tmp_path / "ordnung-demo.db").exists()


def demo_plugins_line(out: str) -> list[str]:
    return found(r"plugins loaded through entry points: (.*)", out).split(", ")


def test_demo_leaves_out_email_unless_a_mail_server_is_configured(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Found: the demo loaded the email plugin and printed SMTP connection warnings."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ORDNUNG_PLUGIN_SETTINGS", raising=False)
    assert main(["demo"]) == 0
    captured = capsys.readouterr()
    plugins = demo_plugins_line(captured.out)
    assert "email" not in plugins
    assert [p for p in plugins if p in ("table_tax", "eu_vat", "us_sales_tax")] == ["table_tax"]
    assert captured.err == ""

    monkeypatch.setenv("ORDNUNG_PLUGIN_SETTINGS",
                       '{"email": {"host": "127.0.0.1", "port": 1, "timeout": 0.5}}')
    assert main(["demo"]) == 0
    assert "email" in demo_plugins_line(capsys.readouterr().out)


def test_demo_as_a_program(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ordnung.api.cli", "demo",
         "--database-url", f"sqlite:///{tmp_path}/demo.db"],
        cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=300,
        check=False)
    assert result.returncode == 0, result.stderr
    assert_demo_output(result.stdout)
    assert (tmp_path / "demo.db").exists()
    assert list(tmp_path.iterdir()) != []
    assert not (tmp_path / "ordnung-demo.db").exists()


# --------------------------------------------------------------------------- migrate


def test_migrate_applies_the_migrations_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ORDNUNG_DATABASE_URL", f"sqlite:///{tmp_path / 'shop.db'}")
    assert main(["migrate"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"applied \d+ migration", out), out
    assert re.search(r"^\s+\d{4}-\d\d-\d\dT", out, re.M), out  # the migration's id
    assert (tmp_path / "shop.db").exists()

    assert main(["migrate"]) == 0
    assert "nothing to apply" in capsys.readouterr().out


def test_migrate_defaults_to_ordnung_db_in_the_current_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["migrate"]) == 0
    assert re.search(r"applied \d+ migration", capsys.readouterr().out)
    assert (tmp_path / "ordnung.db").exists()


def test_a_bad_database_url_is_an_error_not_a_traceback(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", "--database-url", "mysql://localhost/shop"]) == 1
    err = capsys.readouterr().err
    assert "unsupported database URL scheme" in err and "Traceback" not in err


# --------------------------------------------------------------------------- plugins


def test_plugins_lists_the_builtin_plugins_with_hooks_and_settings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    # needs no database: an unusable URL does not matter
    monkeypatch.setenv("ORDNUNG_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    listed = re.findall(r"^(\w+) — ", out, re.M)
    for name in BUILTIN:
        assert name in listed, (f"{name} not in {listed} (the names come from "
                                "[project.entry-points.ordnung] in pyproject.toml)")
    assert "ordnung_authorize" in out and "ordnung_shipping_quotes" in out
    assert 'webhook_secret: str = "sandbox-secret"' in out  # settings with their defaults
    assert "tiers: list[Tier] = []" in out
    assert "where Tier = {threshold: int" in out
    assert list(tmp_path.iterdir()) == []


class NeedsKey:
    """A third party's plugin whose settings have a required field."""

    class Settings(msgspec.Struct, forbid_unknown_fields=True):
        api_key: str
        retries: int = 3

    def __init__(self, settings: NeedsKey.Settings) -> None:
        self.settings = settings

    @hookimpl
    def ordnung_on_event(self, event: Any) -> None:
        return None


def test_plugins_reports_a_broken_plugin_and_lists_the_others(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.metadata as md

    fake = [md.EntryPoint(name="needs_key", value="tests.test_cli:NeedsKey", group="ordnung"),
            md.EntryPoint(name="broken", value="tests.no_such_module:Plugin", group="ordnung")]
    monkeypatch.setattr(md, "entry_points", lambda group: fake if group == "ordnung" else [])
    assert main(["plugins"]) == 1
    out = capsys.readouterr().out
    assert "2 plugin(s)" in out
    assert "broken — cannot be imported from tests.no_such_module:Plugin" in out
    assert "needs_key — A third party's plugin" in out
    assert "hooks: ordnung_on_event" in out
    assert "api_key: str (required)" in out and "retries: int = 3" in out
    assert "not loadable without settings" in out


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert re.fullmatch(r"ordnung \S+\n", capsys.readouterr().out)
    assert main([]) == 2
    out = capsys.readouterr().out
    assert "demo" in out and "migrate" in out and "plugins" in out


# --------------------------------------------------------------------------- docs/hooks.md


def hookspec_functions() -> dict[str, Any]:
    return {name: fn for name, fn in inspect.getmembers(hookspecs_module, inspect.isfunction)
            if name.startswith("ordnung_")}


def test_every_hookspec_is_documented() -> None:
    doc = HOOKS_DOC.read_text(encoding="utf-8")
    headings = set(re.findall(r"^## (ordnung_\w+)\s*$", doc, re.M))
    specs = hookspec_functions()
    assert specs, "no hookspecs found"
    undocumented = sorted(set(specs) - headings)
    assert not undocumented, f"docs/hooks.md has no '## <hook>' section for {undocumented}"
    no_docstring = sorted(name for name, fn in specs.items() if not inspect.getdoc(fn))
    assert not no_docstring, f"hookspecs without a docstring: {no_docstring}"
    stale = sorted(headings - set(specs))
    assert not stale, f"docs/hooks.md documents hooks that do not exist: {stale}"


def test_the_hook_table_is_generated_from_the_specs(
        capsys: pytest.CaptureFixture[str]) -> None:
    committed = HOOKS_DOC.read_text(encoding="utf-8")
    assert with_hook_table(committed) == committed, \
        "run `ordnung hooks-doc --update docs/hooks.md`"
    assert main(["hooks-doc"]) == 0
    printed = capsys.readouterr().out
    assert printed == hook_table() and printed in committed
    assert "| [`ordnung_tax`](#ordnung_tax) | firstresult | outside-transaction | `TaxAnswer` |" \
        in printed


def test_hooks_doc_update_rewrites_only_the_table(tmp_path: Path) -> None:
    page = tmp_path / "hooks.md"
    page.write_text(f"intro\n\n{BEGIN}\nstale\n{END}\n\nrest\n", encoding="utf-8")
    assert main(["hooks-doc", "--update", str(page)]) == 0
    assert page.read_text(encoding="utf-8") == f"intro\n\n{hook_table()}\nrest\n"


def doc_examples() -> dict[str, type]:
    """Run every python block of docs/hooks.md; return the plugin classes they define."""
    doc = HOOKS_DOC.read_text(encoding="utf-8")
    plugins: dict[str, type] = {}
    for block in re.findall(r"```python\n(.*?)```", doc, re.S):
        if block.lstrip().startswith("def ordnung_"):
            continue  # a signature, not an example
        namespace: dict[str, Any] = {"__name__": "hooks_doc_example"}
        exec(compile(block, str(HOOKS_DOC), "exec"), namespace)
        for value in namespace.values():
            if inspect.isclass(value) and any(
                    name.startswith("ordnung_") for name in vars(value)):
                plugins[value.__name__] = value
    return plugins


def test_the_hook_examples_are_valid_plugins() -> None:
    examples = doc_examples()
    for name in ("AgeCheck", "VipDiscount", "WeightBands", "SwissVat", "AcmePay",
                 "NoLateCancellation", "MarketplaceSync", "Hello"):
        assert name in examples
    host = PluginHost()
    for name, cls in examples.items():
        host.register(cls, name=name.lower())  # pluggy checks hook names and arguments
    host.check()
    assert host.implements("acmepay", "ordnung_authorize")


async def test_the_hook_examples_work_in_an_engine(make_engine: Any) -> None:
    ex = doc_examples()
    engine: Engine = await make_engine(plugins=[
        *builtin_plugins(),
        (ex["VipDiscount"], "vip", {"percent": 10}),
        (ex["WeightBands"], "weight_bands", {}),
        (ex["SwissVat"], "swiss_vat"),
        (ex["NoLateCancellation"], "no_late_cancellation"),
        (ex["AgeCheck"], "age_check"),
    ])
    await seed_shop(engine)
    vip = await engine.customers.create(email="vip@example.com", tags=["vip"])
    request = msgspec.structs.replace(
        order_request(("SHIRT-M", 2), customer_id=vip.id, email="vip@example.com"),
        shipping_method="weight_bands:parcel")
    order = await engine.orders.place(request)
    assert order.totals.discounts == -500  # 10 % of EUR 50.00
    assert order.shipping is not None and order.shipping.price == 495
    assert order.status == "awaiting_age_check"
    order = await engine.payments.capture(order.id)
    order = await engine.orders.transition(order.id, "age_verified", actor="staff:anna")
    assert order.status == "processing"
    order, shipments = await engine.fulfilment.create_shipment(order.id)
    await engine.fulfilment.pick(order.id, shipments[0].id)
    with pytest.raises(TransitionVetoed):
        await engine.orders.cancel(order.id, actor="customer:vip@example.com")

    zurich = Address(name="Heidi Muster", line1="Bahnhofstrasse 1", city="Zürich",
                     postal_code="8001", country="CH")
    swiss = await engine.orders.place(msgspec.structs.replace(
        order_request(("SHIRT-M", 1)), shipping_address=zurich))
    assert [line.tax_rate for line in swiss.lines] == ["0.081"]


def test_hookimpl_is_the_public_marker() -> None:
    """The docs tell plugin authors to import hookimpl from ordnung.core."""
    assert hookimpl is hookspecs_module.hookimpl
