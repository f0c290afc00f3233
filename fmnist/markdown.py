"""Markdown tables, written one way everywhere (reports, summaries, benchmark output).

markdown_table(["model", "accuracy"], [["baseline", "91.96 %"]], align="lr")
# | model | accuracy |
# |---|---:|
# | baseline | 91.96 % |
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

_RULE = {"l": "---", "r": "---:"}


def markdown_cell(value: object) -> str:
    """A cell's text: ``|`` escaped and line breaks folded, so a table row stays one row."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(
    header: Sequence[object], rows: Iterable[Sequence[object]], align: str = ""
) -> str:
    """A GitHub-flavoured Markdown table, without a trailing newline. ``align`` has one
    letter per column, ``l`` (the default) or ``r`` (numbers)."""
    align = align or "l" * len(header)
    if len(align) != len(header) or set(align) - set(_RULE):
        raise ValueError(f"align {align!r}: expected l or r for each of {len(header)} columns")

    def line(cells: Sequence[object]) -> str:
        return "|" + "|".join(f" {markdown_cell(c)} " if c != "" else " " for c in cells) + "|"

    rule = "|" + "|".join(_RULE[a] for a in align) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])
