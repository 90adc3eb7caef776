"""Print the last line of a CI run: ``N passed, M failed`` over every test stage.

Each stage is given as ``NAME EXIT_CODE JUNIT_XML``. A stage's tests are counted from
its JUnit report (pytest and schemathesis both write one); a stage that failed without
a readable report counts as one failed test, so a crash never reads as success. A check
without tests of its own (ruff, mypy) is given the report ``-`` and counts as one test.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def counts(path: Path) -> tuple[int, int, int]:
    """(passed, failed, skipped) of one JUnit XML report."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    passed = failed = skipped = 0
    for suite in suites:
        for case in suite.iter("testcase"):
            tags = {child.tag for child in case}
            if tags & {"failure", "error"}:
                failed += 1
            elif "skipped" in tags:
                skipped += 1
            else:
                passed += 1
    return passed, failed, skipped


def main(argv: list[str]) -> int:
    if len(argv) % 3:
        print("usage: summary.py (NAME EXIT_CODE JUNIT_XML)...", file=sys.stderr)
        return 2
    total_passed = total_failed = total_skipped = 0
    for i in range(0, len(argv), 3):
        name, code, report = argv[i], int(argv[i + 1]), argv[i + 2]
        if report == "-":
            passed, failed, skipped = (1, 0, 0) if code == 0 else (0, 1, 0)
        else:
            try:
                passed, failed, skipped = counts(Path(report))
            except (OSError, ET.ParseError):
                passed, failed, skipped = 0, 0, 0
        if code != 0 and failed == 0:
            failed = 1  # the stage failed without saying which test: count the stage
        print(f"  {name}: {passed} passed, {failed} failed, {skipped} skipped")
        total_passed += passed
        total_failed += failed
        total_skipped += skipped
    print(f"{total_passed} passed, {total_failed} failed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
