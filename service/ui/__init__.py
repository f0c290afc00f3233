"""The demo page at ``/ui``: pick, drop or draw an image and see every served model's answer.

    create_app() adds it (service/http_api.py); open http://localhost:3000/ui

The page is a client of the public API like any other (``GET /models``, then one
``POST /classify`` per model): it holds no model logic and no second copy of the contract.
Everything it loads comes from the service itself, so it works offline and in the
container: the page (``index.html``), its stylesheet and script (``static/``) and the
bundled examples, which are the repository's ``docs/examples/*.png`` (one copy, shipped by
bentofile.yaml's ``include`` and the Dockerfile). No route here is in the OpenAPI
document (it describes the API, not its pages) or passes through the prediction metrics.

    GET /ui                   the page (the examples written in as buttons)
    GET /ui/static/<file>     demo.css, demo.js, icon.svg
    GET /ui/examples/<file>   the bundled example PNGs

Anything else under ``/ui`` is the contract's 404 (``not_found``), like any unknown path.
"""

from __future__ import annotations

import html
import logging
import re
from pathlib import Path

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from fmnist.dataset import CLASS_NAMES

log = logging.getLogger(__name__)

UI_DIR = Path(__file__).resolve().parent
STATIC_DIR = UI_DIR / "static"
# The examples live once, in docs/examples (the README's curl examples use them too); a
# Bento and the container image keep that relative place (bentofile.yaml, Dockerfile).
EXAMPLES_DIR = UI_DIR.parents[1] / "docs" / "examples"
PATH = "/ui"
EXAMPLES_SLOT = "<!-- examples -->"
# The page talks to its own origin only; the browser enforces it. Previews are blob: URLs.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def example_files(folder: Path) -> list[tuple[Path, str]]:
    """The example PNGs with the class each one shows, in class order (then by name).

    A file is named after its class (``tshirt_top.png`` shows "T-shirt/top"); a file that
    names no class keeps its own name, after the others.
    """
    classes = {_key(name): (i, name) for i, name in enumerate(CLASS_NAMES)}
    found = []
    for path in sorted(folder.glob("*.png")) if folder.is_dir() else []:
        index, label = classes.get(_key(path.stem), (len(CLASS_NAMES), path.stem.replace("_", " ")))
        found.append((index, path, label))
    return [(path, label) for _, path, label in sorted(found, key=lambda f: f[:2])]


def render_page(examples: Path = EXAMPLES_DIR) -> str:
    """index.html with a button per bundled example written into its examples slot."""
    page = (UI_DIR / "index.html").read_text(encoding="utf-8")
    if EXAMPLES_SLOT not in page:
        raise RuntimeError(f"{UI_DIR / 'index.html'} has no {EXAMPLES_SLOT} slot")
    buttons = "\n".join(
        f'<li><button type="button" class="example" data-src="ui/examples/{html.escape(p.name)}">'
        f'<img src="ui/examples/{html.escape(p.name)}" alt="" width="56" height="56">'
        f"<span>{html.escape(label)}</span></button></li>"
        for p, label in example_files(examples)
    )
    return page.replace(EXAMPLES_SLOT, buttons or "<li>No bundled examples.</li>")


def add_demo_page(app: FastAPI, examples: Path = EXAMPLES_DIR) -> None:
    """``GET /ui``, its static files and the examples, outside the OpenAPI document."""
    page = render_page(examples)
    headers = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache"}

    async def demo_page(request: Request) -> HTMLResponse:
        return HTMLResponse(page, headers=headers)

    app.add_api_route(PATH, demo_page, methods=["GET"], include_in_schema=False)
    app.mount(f"{PATH}/static", StaticFiles(directory=STATIC_DIR), name="ui-static")
    if examples.is_dir():  # a build without them still serves the page, without examples
        app.mount(f"{PATH}/examples", StaticFiles(directory=examples), name="ui-examples")
    else:
        log.warning("no bundled examples for %s: %s is not a folder", PATH, examples)
