"""The hook table of ``docs/hooks.md``, generated from the specs' declared contracts.

The rest of the page is prose and examples written by hand; the table of every hook's
convention, phase and answer type is what must never drift from ``core/hookspecs.py``,
so it is written from the contracts the host itself uses: ``ordnung hooks-doc``
prints it, ``ordnung hooks-doc --update docs/hooks.md`` puts it in place between the
markers, and a test fails when the committed page and the specs differ.
"""

from __future__ import annotations

from ordnung.core.hook_contracts import contracts

BEGIN = "<!-- hook table: generated from core/hookspecs.py by `ordnung hooks-doc` -->"
END = "<!-- end of the generated hook table -->"


def cell(text: str) -> str:
    """Text for a Markdown table cell: one line, pipes escaped, reST literals as Markdown."""
    return " ".join(text.split()).replace("``", "`").replace("|", "\\|")


def hook_table() -> str:
    """The table, one row per hook in the order the specs declare them."""
    rows = [BEGIN, "",
            "| hook | convention | phase | answer | what for |",
            "|---|---|---|---|---|"]
    for c in contracts().values():
        answer = "nothing (ignored)" if c.answer_name == "None" else f"`{c.answer_name}`"
        rows.append(f"| [`{c.name}`](#{c.name}) | {c.convention} | {c.phase} "
                    f"| {cell(answer)} | {cell(c.summary)} |")
    rows += ["", END]
    return "\n".join(rows) + "\n"


def with_hook_table(page: str) -> str:
    """``page`` with the text between the markers (inclusive) replaced by ``hook_table()``."""
    start = page.find(BEGIN)
    stop = page.find(END)
    if start < 0 or stop < start:
        raise ValueError("the page has no generated hook table markers")
    return page[:start] + hook_table() + page[stop + len(END) + 1:]
