"""A report as plain data (sections of paragraphs, lists, tables and figures), rendered once
to Markdown (figures linked) and once to one self-contained HTML file (figures inlined as
base64), so the two can never say different things.

Paragraph text may use ``**bold**``; everything else is taken literally.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class Image:
    filename: str  # relative to the report folder
    caption: str


Block = str | Table | Bullets | Image


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Document:
    title: str
    sections: list[Section] = field(default_factory=list)


_BOLD = re.compile(r"\*\*(.+?)\*\*")


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(doc: Document) -> str:
    out = [f"# {doc.title}", ""]
    for section in doc.sections:
        out += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Table):
                out.append("| " + " | ".join(_md_cell(h) for h in block.header) + " |")
                out.append("|" + "|".join("---" for _ in block.header) + "|")
                out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
                if block.caption:
                    out += ["", f"*{block.caption}*"]
            elif isinstance(block, Bullets):
                out += [f"- {item}" for item in block.items]
            elif isinstance(block, Image):
                out += [f"![{block.caption}]({block.filename})", "", f"*{block.caption}*"]
            else:
                out.append(block)
            out.append("")
    return "\n".join(out)


def _inline(text: str) -> str:
    return _BOLD.sub(r"<strong>\1</strong>", html.escape(text))


_CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #2b6cb0; padding-bottom: .3em; }
h2 { margin-top: 2em; color: #2b6cb0; }
table { border-collapse: collapse; margin: 1em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: right; }
th { background: #edf2f7; } td:first-child, th:first-child { text-align: left; }
tr:nth-child(even) td { background: #f9fafb; }
caption { caption-side: bottom; font-size: .85em; color: #555; padding-top: .3em; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; }
figcaption { font-size: .85em; color: #555; }
"""


def to_html(doc: Document, folder: Path) -> str:
    """One HTML file; figures are read from ``folder`` and embedded as data URIs."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(doc.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(doc.title)}</h1>",
    ]
    for section in doc.sections:
        out.append(f"<h2>{html.escape(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, Table):
                out.append("<table>")
                if block.caption:
                    out.append(f"<caption>{_inline(block.caption)}</caption>")
                out.append(
                    "<tr>" + "".join(f"<th>{_inline(h)}</th>" for h in block.header) + "</tr>"
                )
                out += [
                    "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>"
                    for row in block.rows
                ]
                out.append("</table>")
            elif isinstance(block, Bullets):
                out.append(
                    "<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block.items) + "</ul>"
                )
            elif isinstance(block, Image):
                data = base64.b64encode((folder / block.filename).read_bytes()).decode("ascii")
                out.append(
                    f'<figure><img src="data:image/png;base64,{data}" '
                    f'alt="{html.escape(block.caption)}">'
                    f"<figcaption>{_inline(block.caption)}</figcaption></figure>"
                )
            else:
                out.append(f"<p>{_inline(block)}</p>")
    out.append("</body></html>")
    return "\n".join(out)
