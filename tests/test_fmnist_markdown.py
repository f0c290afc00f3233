"""fmnist/markdown.py: the one way Markdown tables are written."""

from __future__ import annotations

import pytest

from fmnist.markdown import markdown_table


def test_a_table_with_aligned_columns_and_escaped_cells() -> None:
    text = markdown_table(["", "a|b", "n"], [["x", "line\nbreak", 1], ["", "y", 2.5]], "llr")
    assert text.splitlines() == [
        "| | a\\|b | n |",
        "|---|---|---:|",
        "| x | line break | 1 |",
        "| | y | 2.5 |",
    ]


def test_left_alignment_is_the_default_and_a_bad_alignment_is_refused() -> None:
    assert markdown_table(["a", "b"], []).splitlines()[1] == "|---|---|"
    with pytest.raises(ValueError, match="align 'lx'"):
        markdown_table(["a", "b"], [], "lx")
    with pytest.raises(ValueError, match="2 columns"):
        markdown_table(["a", "b"], [], "l")
