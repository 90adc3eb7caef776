"""The plugin author's kit: ``ordnung new-plugin`` and the ``ordnung.testing`` suites.

``test_slow_scaffold_installs_into_a_fresh_venv_and_prices_an_order`` is the
end-to-end check (about 20-40 s): a scaffolded plugin is built and installed
into a new virtual environment, found there through its entry point, used in a
placement and its own tests pass there. The fresh environment borrows ordnung
and its dependencies from this one through a ``.pth`` file (nothing is
downloaded); the scaffolded package itself is installed only there.

``test_slow_scaffold_passes_mypy_strict_and_its_tests_in_a_fresh_venv`` is what a
plugin author does: in a virtual environment that has nothing but pip, run the
commands ``ordnung new-plugin`` prints (install this ordnung, non-editable, then the
scaffold with its test extras), then ``mypy`` (strict) and ``pytest``. pip fetches
the dependencies from the package index it is configured with. The environment is
made once per test session (a minute or two on a small machine).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ordnung.api.cli import main
from ordnung.api.scaffold import files_for, normalize_name

KIT_TIMEOUT = 120
#: installing ordnung and its dependencies into an empty environment
INSTALL_TIMEOUT = 900
ROOT = Path(__file__).parents[1]


def clean_env() -> dict[str, str]:
    """The environment without a developer's ordnung settings or Python path."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ORDNUNG_") and k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1",
               PIP_ROOT_USER_ACTION="ignore", PYTHONDONTWRITEBYTECODE="1")
    return env


def run(args: list[str], cwd: Path, timeout: float = KIT_TIMEOUT) -> str:
    result = subprocess.run(args, cwd=cwd, env=clean_env(), capture_output=True, text=True,
                            timeout=timeout, check=False)
    assert result.returncode == 0, (f"{args[1:]} failed ({result.returncode}):\n"
                                    f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout


# --------------------------------------------------------------------------- new-plugin


def test_new_plugin_writes_a_package_to_start_from(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["new-plugin", "Acme-Bonus", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    root = tmp_path / "acme_bonus"
    assert f"created {root}" in out
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == sorted(
        files_for("acme_bonus"))
    pyproject = (root / "pyproject.toml").read_text()
    assert '[project.entry-points.ordnung]\nacme_bonus = "acme_bonus.plugin:AcmeBonus"' \
        in pyproject
    plugin = (root / "acme_bonus" / "plugin.py").read_text()
    assert "class Settings(msgspec.Struct" in plugin and "@hookimpl" in plugin
    assert "from ordnung.testing import" in (root / "tests" / "test_plugin.py").read_text()
    for source in root.rglob("*.py"):  # every generated module is valid Python
        compile(source.read_text(), str(source), "exec")

    # the folder is not overwritten, and names are checked
    assert main(["new-plugin", "acme_bonus", "--dir", str(tmp_path)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    for bad in ("9lives", "class", "acme bonus", "kit_x", ""):
        assert main(["new-plugin", bad, "--dir", str(tmp_path)]) == 2, bad
        assert "ordnung new-plugin:" in capsys.readouterr().err
    assert normalize_name(" Mega_Sale-2 ") == "mega_sale_2"


def test_slow_scaffold_installs_into_a_fresh_venv_and_prices_an_order(tmp_path: Path) -> None:
    assert main(["new-plugin", "acme_bonus", "--dir", str(tmp_path)]) == 0
    package = tmp_path / "acme_bonus"

    # a fresh environment: no pip, no ordnung, nothing of its own
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    fresh_site = Path(run([str(python), "-c",
                           "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          tmp_path).strip())
    assert fresh_site.is_relative_to(venv)
    missing = subprocess.run([str(python), "-c", "import ordnung.core"], env=clean_env(),
                             capture_output=True, check=False, timeout=KIT_TIMEOUT)
    assert missing.returncode != 0  # really empty
    # ... that borrows ordnung, pip and the rest from this environment's site-packages
    ours = sysconfig.get_paths()["purelib"]
    (fresh_site / "ordnung_kit_test.pth").write_text(
        f"import site; site.addsitedir({ours!r})\n")

    # build and install the scaffolded plugin into the fresh environment only
    run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--no-build-isolation", "--no-cache-dir", str(package)], tmp_path)
    where = run([str(python), "-c", textwrap.dedent("""
        import importlib.metadata as md, json, acme_bonus
        eps = {ep.name: ep.value for ep in md.entry_points(group="ordnung")}
        print(json.dumps({"entry_point": eps.get("acme_bonus"), "file": acme_bonus.__file__,
                          "version": md.version("ordnung-acme-bonus")}))
    """)], tmp_path)
    found = json.loads(where)
    assert found["entry_point"] == "acme_bonus.plugin:AcmeBonus"
    assert Path(found["file"]).is_relative_to(fresh_site)
    assert found["version"] == "0.1.0"
    # this environment does not have it: it lives in the fresh one
    ours_sees = run([sys.executable, "-c", "import importlib.metadata as md; print(sorted("
                     "ep.name for ep in md.entry_points(group='ordnung')))"], tmp_path)
    assert "acme_bonus" not in ours_sees and "sandbox" in ours_sees

    # an engine loads it through its entry point, with the built-in plugins, and uses it
    script = tmp_path / "place.py"
    script.write_text(textwrap.dedent("""
        import asyncio, json, sys
        from ordnung.core import Engine, EngineConfig
        from ordnung.testing import Shop

        async def main(url):
            engine = Engine(EngineConfig(
                database_url=url, load_entry_points=True,
                plugins=["sandbox", "manual", "flat_rate", "table_tax", "free_gift",
                         "channel_log", "acme_bonus"],
                plugin_settings={"acme_bonus": {"percent": 10, "min_subtotal": 5000}}))
            async with engine:
                shop = Shop(engine, gateway="sandbox", shipping_method="flat_rate:standard")
                await shop.seed()
                order = await shop.place(("KIT-SHIRT", 3), token="tok_success")
                print(json.dumps({
                    "status": order.status, "total": order.totals.total,
                    "plugins": [p["name"] for p in engine.plugins()],
                    "adjustments": [[a.source, a.amount, a.reason] for a in order.adjustments
                                    if a.source == "acme_bonus"]}))

        asyncio.run(main(sys.argv[1]))
    """))
    placed = json.loads(run([str(python), str(script), f"sqlite:///{tmp_path / 'shop.db'}"],
                            tmp_path).strip().splitlines()[-1])
    assert "acme_bonus" in placed["plugins"]
    assert placed["adjustments"] == [["acme_bonus", -750, "10% off from EUR 50.00"]]
    assert placed["status"] == "processing"
    assert placed["total"] == 7500 - 750 + 495  # EUR 75.00 - 10 % + flat-rate shipping

    # the scaffold's own tests (conformance suite included) pass in the fresh environment
    out = run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"], package)
    assert "passed" in out and "failed" not in out, out


@pytest.fixture(scope="session")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment with pip and this ordnung (installed from the source tree,
    not editable: as a user's would be), nothing else."""
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    run([sys.executable, "-m", "venv", str(venv)], venv.parent, timeout=INSTALL_TIMEOUT)
    run([str(venv_bin(venv) / "python"), "-m", "pip", "install", "--quiet", str(ROOT)],
        venv.parent, timeout=INSTALL_TIMEOUT)
    return venv


def venv_bin(venv: Path) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin")


def test_slow_scaffold_passes_mypy_strict_and_its_tests_in_a_fresh_venv(
        tmp_path: Path, fresh_venv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["new-plugin", "acme_bonus", "--dir", str(tmp_path)]) == 0
    [hint] = [line for line in capsys.readouterr().out.splitlines()
              if line.startswith("next: ")]
    commands = hint.removeprefix("next: ")
    assert "pip install -e '.[test]'" in commands and "mypy" in commands
    env = clean_env()
    env.update(VIRTUAL_ENV=str(fresh_venv),
               PATH=os.pathsep.join([str(venv_bin(fresh_venv)), env.get("PATH", "")]))
    result = subprocess.run(["bash", "-c", f"set -e; {commands} -q"],
                            cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=INSTALL_TIMEOUT, check=False)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    assert "Success: no issues found" in out  # mypy --strict, from the scaffold's pyproject
    assert " passed" in out and "failed" not in out
    # the environment's ordnung is a regular install, not this source tree
    where = run([str(venv_bin(fresh_venv) / "python"), "-c",
                 "import ordnung.plugin; print(ordnung.plugin.__file__)"], tmp_path)
    assert Path(where.strip()).is_relative_to(fresh_venv)


# --------------------------------------------------------------------------- the suites

BROKEN = '''
import itertools
from datetime import timedelta

from ordnung.core import hookimpl
from ordnung.core.domain.payments import GatewayResult, PaymentMethod
from ordnung.core.domain.pricing import Discount, LineTax, ShippingQuote, TaxAnswer
from ordnung.testing import (CarrierConformance, LoyaltyConformance,
                             PaymentGatewayConformance, TaxConformance)

counter = itertools.count()


class ForgetfulGateway:
    """Approves, but every call with the same key gets a new reference."""

    @hookimpl
    def ordnung_payment_methods(self):
        return [PaymentMethod(method="card", name="Card")]

    def _answer(self):
        return GatewayResult(outcome="approved", reference=f"ref-{next(counter)}")

    @hookimpl
    def ordnung_authorize(self, request):
        return self._answer()

    @hookimpl
    def ordnung_capture(self, request):
        return self._answer()

    @hookimpl
    def ordnung_refund(self, request):
        return self._answer()

    @hookimpl
    def ordnung_void(self, request):
        return self._answer()


class YesterdayCarrier:
    @hookimpl
    def ordnung_shipping_quotes(self, ctx):
        return [ShippingQuote(service="late", name="Late", price=100,
                              expected_delivery=ctx.now.date() - timedelta(days=1))]


class GiftlessTax:
    """Forgets the zero-priced lines."""

    @hookimpl
    def ordnung_tax(self, ctx):
        return TaxAnswer(lines=[LineTax(line_id=ln.id, rate="0.2") for ln in ctx.lines
                                if ln.line_total > 0])


class MoodyDiscount:
    @hookimpl
    def ordnung_adjustments(self, ctx):
        return [Discount(amount=next(counter) % 7 + 1, reason="mood")]


class TestForgetfulGateway(PaymentGatewayConformance):
    plugin = ForgetfulGateway()
    name = "forgetful"
    check_entry_point = False


class TestYesterdayCarrier(CarrierConformance):
    plugin = YesterdayCarrier()
    name = "yesterday"
    check_entry_point = False


class TestGiftlessTax(TaxConformance):
    plugin = GiftlessTax()
    name = "giftless"
    check_entry_point = False


class TestMoodyDiscount(LoyaltyConformance):
    plugin = MoodyDiscount()
    name = "moody"
    check_entry_point = False
'''


def test_the_suites_fail_broken_plugins(tmp_path: Path) -> None:
    """Each suite catches a plugin that breaks its contract, and passes the rest of it."""
    (tmp_path / "test_broken.py").write_text(BROKEN)
    report = tmp_path / "report.xml"
    selected = ["TestForgetfulGateway and (idempotent or offers)",
                "TestYesterdayCarrier and (well_formed or deterministic)",
                "TestGiftlessTax and (every_line or deterministic)",
                "TestMoodyDiscount and (well_formed or deterministic)"]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
         str(tmp_path), f"--junitxml={report}", "-k", " or ".join(f"({s})" for s in selected),
         "test_broken.py"],
        cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=KIT_TIMEOUT,
        check=False)
    assert report.exists(), result.stdout + result.stderr
    outcomes: dict[str, str] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        failed = case.find("failure") is not None or case.find("error") is not None
        outcomes[name] = "failed" if failed else "passed"
    assert outcomes == {
        "TestForgetfulGateway::test_every_operation_is_idempotent_on_its_key": "failed",
        "TestForgetfulGateway::test_offers_payment_methods": "passed",
        "TestYesterdayCarrier::test_quotes_are_well_formed": "failed",
        "TestYesterdayCarrier::test_quotes_are_deterministic": "passed",
        "TestGiftlessTax::test_answers_a_rate_for_every_line": "failed",
        "TestGiftlessTax::test_answers_are_deterministic": "passed",
        "TestMoodyDiscount::test_answers_are_well_formed_and_deterministic": "failed",
        "TestMoodyDiscount::test_pricing_is_deterministic_and_never_negative": "failed",
    }, result.stdout[-3000:]
    assert "answered differently for the same key" in result.stdout
    assert "delivers in the past" in result.stdout


def test_the_pytest_plugin_is_registered() -> None:
    import importlib.metadata as md

    plugins = {ep.name: ep.value for ep in md.entry_points(group="pytest11")}
    assert plugins.get("ordnung") == "ordnung.testing.pytest_plugin"


# --------------------------------------------------------------------------- docs/plugins.md

PLUGINS_DOC = Path(__file__).parents[1] / "docs" / "plugins.md"


def test_every_builtin_plugin_and_setting_is_documented() -> None:
    """docs/plugins.md has a section per built-in entry point naming each of its settings."""
    import importlib.metadata as md
    import re

    import msgspec

    doc = PLUGINS_DOC.read_text(encoding="utf-8")
    sections = dict(re.findall(r"^#### `(\w+)`\n(.*?)(?=^#{2,4} )", doc, re.S | re.M))
    builtin = [ep for ep in md.distribution("ordnung").entry_points if ep.group == "ordnung"]
    assert builtin
    problems = []
    for ep in builtin:
        text = sections.get(ep.name)
        if text is None:
            problems.append(f"no '#### `{ep.name}`' section")
            continue
        if f'{ep.name} = "{ep.value}"' not in text:
            problems.append(f"{ep.name}: entry point {ep.value} not stated")
        if f"| `{ep.name}` | `{ep.value}` |" not in doc:
            problems.append(f"{ep.name}: not in the table of built-in plugins")
        settings = getattr(ep.load(), "Settings", None)
        for field in msgspec.structs.fields(settings) if settings else ():
            if f"`{field.name}`" not in text:
                problems.append(f"{ep.name}: setting `{field.name}` not described")
    stale = sorted(set(sections) - {ep.name for ep in builtin})
    assert not problems and not stale, (problems, stale)
