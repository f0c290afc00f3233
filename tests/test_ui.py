"""The demo page at /ui, in-process (create_app over the stub backend): what it serves, that
it needs nothing beyond the service, its accessibility basics, and its 404s. Its behaviour in
a real browser against a real server is tests/test_browser_ui.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from fmnist.dataset import CLASS_NAMES
from loadtests.launch import REPO_ROOT
from service.ui import EXAMPLES_DIR, STATIC_DIR, UI_DIR, add_demo_page, example_files
from tests.conftest import ApiClient, StubBackend

PAGE = "http://api/ui"  # the page's own URL: its relative references resolve against it


class PageParts(HTMLParser):
    """The tags of a page with their attributes, and the text of each <label> and <button>."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.texts: dict[int, str] = {}
        self._open: list[int] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        if tag in ("label", "button"):
            self._open.append(len(self.tags) - 1)
            self.texts[len(self.tags) - 1] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag in ("label", "button") and self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for index in self._open:
            self.texts[index] += data

    def all(self, tag: str) -> list[dict[str, str]]:
        return [attrs for name, attrs in self.tags if name == tag]


def parse(page: str) -> PageParts:
    parts = PageParts()
    parts.feed(page)
    return parts


def references(page: str) -> list[str]:
    """Every URL the page refers to: src, href, data-src, and the script's fetch() calls."""
    urls = [
        value
        for _, attrs in parse(page).tags
        for key, value in attrs.items()
        if key in ("src", "href", "data-src", "action", "srcset", "poster")
    ]
    return urls


def test_the_page_is_served(api: ApiClient) -> None:
    resp = api.get("/ui")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/html; charset=utf-8"
    page = resp.text
    assert page.startswith("<!doctype html>") and '<html lang="en">' in page
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    # The browser itself holds the page to its own origin.
    csp = resp.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "connect-src 'self'" in csp
    assert "<!-- examples -->" not in page  # the slot was filled


def test_one_button_per_bundled_example_in_class_order(api: ApiClient) -> None:
    parts = parse(api.get("/ui").text)
    buttons = [
        (attrs["data-src"], parts.texts[i].strip())
        for i, (tag, attrs) in enumerate(parts.tags)
        if tag == "button" and "data-src" in attrs
    ]
    assert [label for _, label in buttons] == list(CLASS_NAMES)
    on_disk = sorted(p.name for p in EXAMPLES_DIR.glob("*.png"))
    assert sorted(src.removeprefix("ui/examples/") for src, _ in buttons) == on_disk
    assert len(on_disk) == 10


def test_everything_the_page_refers_to_is_served_by_the_service(api: ApiClient) -> None:
    page = api.get("/ui").text
    script = (STATIC_DIR / "demo.js").read_text()
    fetched = re.findall(r"fetch\(\s*'([^']+)'", script)
    assert sorted(set(fetched)) == ["classify", "models"]  # the public API, nothing else
    kinds = {".css": "text/css", ".js": "text/javascript", ".png": "image/png"}
    kinds[".svg"] = "image/svg+xml"
    for ref in [*references(page), *fetched]:
        url = urljoin(PAGE, ref)
        assert urlsplit(url).netloc == "api", f"{ref} leaves the service"
        if ref in fetched or ref == "./":
            continue  # the API itself, and the Swagger UI at / (BentoML's)
        resp = api.get(urlsplit(url).path)
        assert resp.status_code == 200, ref
        assert resp.headers["content-type"].startswith(kinds[Path(ref).suffix]), ref
    for path, _ in example_files(EXAMPLES_DIR):
        assert api.get(f"/ui/examples/{path.name}").content == path.read_bytes()


def test_no_reference_to_another_origin_in_the_page_files(api: ApiClient) -> None:
    """No CDN, no absolute URL: the page works offline and behind a path prefix."""
    texts = {
        "/ui": api.get("/ui").text,
        **{p.name: p.read_text() for p in STATIC_DIR.iterdir() if p.suffix in (".css", ".js")},
    }
    assert set(texts) == {"/ui", "demo.css", "demo.js"}
    for name, text in texts.items():
        assert not re.search(r"(?i)\b(https?|ftp|wss?):|['\"(]//", text), name
        assert "@import" not in text and "url(" not in text, name
    for ref in references(texts["/ui"]):
        assert not ref.startswith("/") and ":" not in ref, f"{ref} is not relative"


def test_accessibility_basics(api: ApiClient) -> None:
    """Every control has a label, every image an alt text, every button a name."""
    parts = parse(api.get("/ui").text)
    labelled = {attrs["for"] for attrs in parts.all("label")}
    for attrs in parts.all("input"):
        assert attrs["id"] in labelled, f"input #{attrs['id']} has no <label for>"
    for attrs in parts.all("img"):
        assert "alt" in attrs, attrs
    for i, (tag, attrs) in enumerate(parts.tags):
        if tag == "button":
            assert parts.texts[i].strip() or attrs.get("aria-label"), attrs
    canvas = parts.all("canvas")
    assert canvas and canvas[0].get("aria-labelledby") and canvas[0].get("aria-describedby")
    assert any(a.get("role") == "alert" for _, a in parts.tags)  # errors are announced
    css = (STATIC_DIR / "demo.css").read_text()
    assert ":focus-visible" in css and "outline: none" not in css


@pytest.mark.parametrize(
    ("method", "path", "status", "reason"),
    [
        ("GET", "/ui/nothing", 404, "not_found"),
        ("GET", "/ui/static/missing.js", 404, "not_found"),
        ("GET", "/ui/examples/missing.png", 404, "not_found"),
        ("GET", "/ui/static/", 404, "not_found"),
        ("GET", "/ui/examples/..%2f..%2fpyproject.toml", 404, "not_found"),
        ("POST", "/ui", 405, "method_not_allowed"),
        ("POST", "/ui/static/demo.js", 405, "method_not_allowed"),
    ],
)
def test_unknown_paths_under_ui_answer_in_the_contract_shape(
    api: ApiClient, method: str, path: str, status: int, reason: str
) -> None:
    resp = api.request(method, path)
    assert resp.status_code == status
    assert resp.headers["content-type"] == "application/json"
    assert resp.json()["error"] == reason and resp.json()["detail"]


def test_the_page_is_not_an_api_operation(api: ApiClient) -> None:
    """Not in the OpenAPI document (like /docs.json), not counted as an API request."""
    assert not [p for p in api.get("/docs.json").json()["paths"] if p.startswith("/ui")]

    def answered() -> float:
        value = REGISTRY.get_sample_value("fmnist_worker_requests_total", {"worker": "0"})
        return value or 0.0

    before = answered()
    for path in ("/ui", "/ui/static/demo.js", "/ui/examples/bag.png"):
        assert api.get(path).status_code == 200
    assert answered() == before
    api.get("/models")
    assert answered() == before + 1  # what is counted, is counted


def test_example_files_follow_the_class_order(tmp_path: Path) -> None:
    for name in ("zebra_stripes.png", "bag.png", "tshirt_top.png", "Ankle-Boot.png", "x.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [(p.name, label) for p, label in example_files(tmp_path)] == [
        ("tshirt_top.png", "T-shirt/top"),
        ("bag.png", "Bag"),
        ("Ankle-Boot.png", "Ankle boot"),
        ("zebra_stripes.png", "zebra stripes"),
    ]
    assert example_files(tmp_path / "missing") == []


def test_names_are_escaped_and_missing_examples_leave_a_working_page(tmp_path: Path) -> None:
    (tmp_path / 'a"b<c>.png').write_bytes(b"\x89PNG")
    app = FastAPI()
    add_demo_page(app, tmp_path)
    client = ApiClient(StubBackend())
    client.app = app
    page = client.get("/ui").text
    assert 'data-src="ui/examples/a&quot;b&lt;c&gt;.png"' in page and "a&quot;b&lt;c&gt;" in page

    bare = FastAPI()
    add_demo_page(bare, tmp_path / "missing")
    client.app = bare
    resp = client.get("/ui")
    assert resp.status_code == 200 and "No bundled examples." in resp.text
    assert client.get("/ui/examples/bag.png").status_code == 404


@pytest.mark.slow
def test_a_bento_ships_the_page_and_the_examples(
    onnx_models: dict[str, Path], tmp_path: Path
) -> None:
    """bentofile.yaml's include: the page's files and docs/examples land in the Bento."""
    env = {
        **os.environ,
        "BENTOML_HOME": str(tmp_path / "home"),
        "BENTOML_DO_NOT_TRACK": "true",
        "FMNIST_MODEL_DIR": str(onnx_models["baseline"].parent),
    }
    done = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", "--output", "tag"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (src,) = (tmp_path / "home" / "bentos" / "fmnist").glob("*/src")
    shipped = {p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file()}
    ui = {p.relative_to(REPO_ROOT).as_posix() for p in UI_DIR.rglob("*") if p.is_file()}
    ui = {p for p in ui if "__pycache__" not in p}
    examples = {p.relative_to(REPO_ROOT).as_posix() for p in EXAMPLES_DIR.glob("*.png")}
    assert ui <= shipped, ui - shipped
    assert examples <= shipped, examples - shipped
