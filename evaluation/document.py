"""A report as plain data (sections and subsections of paragraphs, lists, tables and
figures), rendered once to Markdown (figures linked) and once to one self-contained HTML
file (figures inlined as base64), so the two can never say different things.

Both open with a table of contents whose links are the headings' anchors, made the way
GitHub makes them (:func:`slug`), so that report.md's contents work on GitHub and
report.html's in any browser. The HTML is meant for people on any screen: a viewport meta
tag, tables that scroll inside their own box on a phone, and figures that open at full size
when clicked (a CSS ``:target`` overlay on the same ``<img>``: no script, no second copy of
the image, no network).

Paragraph text may use ``**bold**``; everything else is taken literally.
"""

from __future__ import annotations

import base64
import html
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fmnist.markdown import markdown_table

CONTENTS = "contents"  # the anchor of the table of contents


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
    subsections: list[Section] = field(default_factory=list)  # one level: h3 under h2

    def images(self) -> Iterator[Image]:
        for block in self.blocks:
            if isinstance(block, Image):
                yield block
        for sub in self.subsections:
            yield from sub.images()


@dataclass
class Document:
    title: str
    sections: list[Section] = field(default_factory=list)

    def images(self) -> Iterator[Image]:
        for section in self.sections:
            yield from section.images()


_BOLD = re.compile(r"\*\*(.+?)\*\*")


def slug(title: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces to
    hyphens (``"Do the models perform the same?"`` → ``do-the-models-perform-the-same``)."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def anchors(doc: Document) -> dict[int, str]:
    """``id(section)`` → its anchor, unique in the document the way GitHub makes repeated
    headings unique (``-1``, ``-2``, …); the contents' own anchor is taken first."""
    taken = {CONTENTS}
    result = {}
    for section in (s for top in doc.sections for s in (top, *top.subsections)):
        base = slug(section.title) or "section"
        anchor, n = base, 0
        while anchor in taken:
            n += 1
            anchor = f"{base}-{n}"
        taken.add(anchor)
        result[id(section)] = anchor
    return result


# -- Markdown -------------------------------------------------------------------------


def _md_blocks(blocks: list[Block]) -> list[str]:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Table):
            out.append(markdown_table(block.header, block.rows))
            if block.caption:
                out += ["", f"*{block.caption}*"]
        elif isinstance(block, Bullets):
            out += [f"- {item}" for item in block.items]
        elif isinstance(block, Image):
            # The picture links to the file itself: a click opens it at full size.
            out += [
                f"[![{block.caption}]({block.filename})]({block.filename})",
                "",
                f"*{block.caption}*",
            ]
        else:
            out.append(block)
        out.append("")
    return out


def to_markdown(doc: Document) -> str:
    ids = anchors(doc)
    out = [f"# {doc.title}", "", "## Contents", ""]
    for section in doc.sections:
        out.append(f"- [{section.title}](#{ids[id(section)]})")
        out += [f"  - [{sub.title}](#{ids[id(sub)]})" for sub in section.subsections]
    out.append("")
    for section in doc.sections:
        out += [f"## {section.title}", "", *_md_blocks(section.blocks)]
        for sub in section.subsections:
            out += [f"### {sub.title}", "", *_md_blocks(sub.blocks)]
    return "\n".join(out)


# -- HTML -----------------------------------------------------------------------------


def _inline(text: str) -> str:
    return _BOLD.sub(r"<strong>\1</strong>", html.escape(text))


_CSS = """
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; scroll-padding-top: .5em; }
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; max-width: 1100px;
       margin: 0 auto; padding: 1em; color: #222; line-height: 1.45; }
p, li, figcaption, h1, h2, h3 { overflow-wrap: anywhere; }
h1 { border-bottom: 2px solid #2b6cb0; padding-bottom: .3em; font-size: 1.6em; }
h2 { margin-top: 2em; color: #2b6cb0; border-bottom: 1px solid #e2e8f0; }
h3 { margin-top: 1.6em; color: #2c5282; }
h2 a.anchor, h3 a.anchor { color: #a0aec0; text-decoration: none; font-size: .8em;
       margin-left: .3em; }
h2 a.top { float: right; font-size: .55em; font-weight: normal; margin-top: .6em; }
nav.contents { background: #f7fafc; border: 1px solid #e2e8f0; border-radius: 6px;
       padding: .4em 1.2em; }
nav.contents h2 { margin-top: .4em; border: 0; }
nav.contents ol { padding-left: 1.4em; margin: .3em 0; }
nav.contents li { margin: .15em 0; }
a { color: #2b6cb0; }
.table-scroll { overflow-x: auto; margin: 1em 0 .3em; max-width: 100%; }
table { border-collapse: collapse; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: right; }
th { background: #edf2f7; } td:first-child, th:first-child { text-align: left; }
tr:nth-child(even) td { background: #f9fafb; }
p.caption { font-size: .85em; color: #555; margin: 0 0 1em; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; height: auto; cursor: zoom-in; display: block; }
figcaption { font-size: .85em; color: #555; }
figure a.close { display: none; }
/* A clicked figure (the URL's #figure-N) fills the window at its own size and scrolls. */
figure:target { position: fixed; inset: 0; z-index: 10; margin: 0; padding: 3em 1em 1em;
       background: rgba(26, 32, 44, .95); overflow: auto; }
figure:target img { max-width: none; cursor: default; background: #fff; }
figure:target figcaption { color: #edf2f7; max-width: 60em; }
figure:target a.close { display: block; position: fixed; top: .6em; right: 1em;
       color: #fff; background: #2b6cb0; padding: .3em .8em; border-radius: 4px;
       text-decoration: none; }
"""


def _png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk; None for anything else."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return width, height


class _HtmlWriter:
    def __init__(self, doc: Document, folder: Path) -> None:
        self.doc, self.folder = doc, folder
        self.ids = anchors(doc)
        self.figures = 0
        self.out: list[str] = []

    def heading(self, level: int, section: Section) -> None:
        anchor = self.ids[id(section)]
        top = f'<a class="top" href="#{CONTENTS}">↑ contents</a>' if level == 2 else ""
        self.out.append(
            f'<h{level} id="{anchor}">{html.escape(section.title)}'
            f'<a class="anchor" href="#{anchor}" aria-label="link to this section">#</a>'
            f"{top}</h{level}>"
        )

    def contents(self) -> None:
        items = []
        for section in self.doc.sections:
            subs = "".join(
                f'<li><a href="#{self.ids[id(s)]}">{html.escape(s.title)}</a></li>'
                for s in section.subsections
            )
            items.append(
                f'<li><a href="#{self.ids[id(section)]}">{html.escape(section.title)}</a>'
                + (f"<ol>{subs}</ol>" if subs else "")
                + "</li>"
            )
        self.out.append(
            f'<nav class="contents" id="{CONTENTS}" aria-label="Contents"><h2>Contents</h2>'
            f"<ol>{''.join(items)}</ol></nav>"
        )

    def figure(self, block: Image) -> None:
        self.figures += 1
        anchor = f"figure-{self.figures}"
        data = (self.folder / block.filename).read_bytes()
        size = _png_size(data)
        dims = f' width="{size[0]}" height="{size[1]}"' if size else ""
        uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        caption = _inline(block.caption)
        self.out.append(
            f'<figure id="{anchor}">'
            f'<a class="close" href="#{anchor}-caption">close ✕</a>'
            f'<a class="open" href="#{anchor}" title="open at full size">'
            f'<img src="{uri}"{dims} alt="{html.escape(block.caption)}"></a>'
            f'<figcaption id="{anchor}-caption">Figure {self.figures}. {caption} '
            f'<a href="#{anchor}">Full size</a></figcaption></figure>'
        )

    def blocks(self, blocks: list[Block]) -> None:
        for block in blocks:
            if isinstance(block, Table):
                rows = [
                    "<tr>" + "".join(f"<th>{_inline(h)}</th>" for h in block.header) + "</tr>",
                    *(
                        "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>"
                        for row in block.rows
                    ),
                ]
                self.out.append(f'<div class="table-scroll"><table>{"".join(rows)}</table></div>')
                if block.caption:
                    # Below the scrolling box, not in it: on a phone it wraps to the screen.
                    self.out.append(f'<p class="caption">{_inline(block.caption)}</p>')
            elif isinstance(block, Bullets):
                self.out.append(
                    "<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block.items) + "</ul>"
                )
            elif isinstance(block, Image):
                self.figure(block)
            else:
                self.out.append(f"<p>{_inline(block)}</p>")

    def render(self) -> str:
        title = html.escape(self.doc.title)
        self.out += [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{title}</title><style>{_CSS}</style></head><body>",
            f"<h1>{title}</h1>",
        ]
        self.contents()
        for section in self.doc.sections:
            self.heading(2, section)
            self.blocks(section.blocks)
            for sub in section.subsections:
                self.heading(3, sub)
                self.blocks(sub.blocks)
        self.out.append("</body></html>")
        return "\n".join(self.out)


def to_html(doc: Document, folder: Path) -> str:
    """One HTML file; figures are read from ``folder`` and embedded as data URIs."""
    return _HtmlWriter(doc, folder).render()
