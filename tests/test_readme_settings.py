"""The operator's documents match the code: settings, the container recipe, the unit.

Every ``ORDNUNG_*`` variable README.md and CONTRIBUTING.md name is one the code reads
(or the test and benchmark tools do), every setting the package reads is in README,
and the commands the Dockerfile and README's systemd unit run are ones ``ordnung``'s
own command line accepts.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path

from ordnung.api.app import create_app
from ordnung.api.cli import build_parser
from ordnung.core.config import ACCOUNT_SETTINGS, DB_TIME_SETTINGS, WEBHOOK_NUMBERS
from ordnung.core.limits import InputLimits, variable_of

ROOT = Path(__file__).resolve().parent.parent
SETTING = re.compile(r"\bORDNUNG_[A-Z][A-Z0-9_]*[A-Z0-9]\b")
#: read by the package, set by ``ordnung serve`` for its workers or by the benchmarks:
#: not for operators to set (the clock skew is for the fault tests, see CONTRIBUTING)
INTERNAL = {"ORDNUNG_LOG_LEVEL", "ORDNUNG_LOG_JSON", "ORDNUNG_STATS_DIR",
            "ORDNUNG_TEST_CLOCK_SKEW_S"}
PACKAGE = ("core", "api", "plugins", "migrations", "testing")


def names_in(*folders: str) -> set[str]:
    found: set[str] = set()
    for folder in folders:
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and path.suffix in {".py", ""} and "__pycache__" not in path.parts:
                found |= set(SETTING.findall(path.read_text(errors="replace")))
    return found


def read_by_package() -> set[str]:
    """Variables the package reads: literal names, and those built from a setting's
    name (the account settings, the database timeouts and the input limits)."""
    return (names_in(*PACKAGE)
            | {f"ORDNUNG_{name.upper()}" for name in (*ACCOUNT_SETTINGS, *DB_TIME_SETTINGS,
                                                      *WEBHOOK_NUMBERS)}
            | {variable_of(name) for name in InputLimits.__struct_fields__})


def test_every_setting_the_docs_name_exists_and_every_one_read_is_documented() -> None:
    known = read_by_package() | names_in("tests", "bench", ".ci")
    for document in ("README.md", "CONTRIBUTING.md"):
        named = set(SETTING.findall((ROOT / document).read_text()))
        assert named, document
        assert not named - known, f"{document} names settings no code reads: " \
                                  f"{sorted(named - known)}"
    readme = set(SETTING.findall((ROOT / "README.md").read_text()))
    missing = read_by_package() - INTERNAL - readme
    assert not missing, f"settings read by the package but not in README: {sorted(missing)}"


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text()
    lines = re.sub(r"\\\n\s*", " ", text).splitlines()
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
            for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_the_container_recipe_builds_the_package_and_serves_it() -> None:
    steps = dockerfile()
    copied = {source for op, args in steps if op == "COPY" and not args.startswith("--from")
              for source in args.split()[:-1]}
    for source in copied:
        assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which is not there"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    folders = set(project["tool"]["setuptools"]["package-dir"].values())
    assert folders <= copied, f"package folders not copied: {sorted(folders - copied)}"
    assert {"pyproject.toml", project["project"]["readme"]} <= copied

    command = json.loads(next(args for op, args in steps if op == "CMD"))
    assert command[:2] == ["ordnung", "serve"]
    parsed = build_parser().parse_args(command[1:])
    assert parsed.host == "0.0.0.0"
    exposed = {int(args.split("/")[0]) for op, args in steps if op == "EXPOSE"}
    assert parsed.port in exposed
    health = next(args for op, args in steps if op == "HEALTHCHECK")
    url = re.search(r"http://127\.0\.0\.1:(\d+)(/[\w/]*)", health)
    assert url is not None and int(url.group(1)) == parsed.port
    paths = {route.path for route in create_app(demo=False).routes}
    assert url.group(2) in paths


def test_the_systemd_unit_in_the_readme_runs_a_command_ordnung_accepts() -> None:
    readme = (ROOT / "README.md").read_text()
    unit = re.search(r"```ini\n(# /etc/systemd/system/ordnung\.service\n.*?)```", readme,
                     re.DOTALL)
    assert unit is not None, "README's systemd unit is gone"
    exec_start = re.search(r"^ExecStart=(.+)$", unit.group(1), re.MULTILINE)
    assert exec_start is not None
    argv = shlex.split(exec_start.group(1))
    assert argv[0].endswith("/ordnung") and argv[1] == "serve"
    build_parser().parse_args(argv[1:])  # exits (SystemExit) on an option ordnung lacks
