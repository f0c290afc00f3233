"""A real browser for the page tests: Debian's Chromium driven by Selenium (headless).

``scripts/setup.sh`` installs ``chromium`` and ``chromium-driver`` when they are missing.
The helpers here are what the page tests check a page with, and what ``make screenshots``
photographs it with:

- :func:`chromium` opens a browser whose viewport is exactly ``width`` CSS pixels wide (a
  phone width is emulated through the DevTools protocol: a headless window cannot be made
  narrower than 500 px);
- :func:`requests_made` lists every URL the page asked for (the DevTools network log);
- :func:`overflowing` names the elements that stick out of the viewport on the right
  without a scrolling box around them;
- :func:`broken_images` names the images that did not load;
- :func:`full_page_png` takes a screenshot of the whole page, not only the viewport.
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
DESKTOP = 1400
PHONE = 390

# Elements whose right edge passes the viewport's, unless an ancestor scrolls them (an
# `overflow-x: auto|scroll|hidden` box) — the way a wide table should sit on a phone.
_OVERFLOWING_JS = """
const width = document.documentElement.clientWidth;
const clipped = (el) => {
  for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
    const o = getComputedStyle(p).overflowX;
    if (o === 'auto' || o === 'scroll' || o === 'hidden') return true;
  }
  return false;
};
const out = [];
for (const el of document.body.querySelectorAll('*')) {
  const r = el.getBoundingClientRect();
  if (r.width === 0 || r.height === 0) continue;
  if (r.right > width + 1 && !clipped(el)) {
    out.push(`${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}` +
             `${el.className && typeof el.className === 'string' ? '.' + el.className : ''}` +
             ` right=${Math.round(r.right)} > ${width}`);
  }
}
return out;
"""

_BROKEN_IMAGES_JS = """
return Array.from(document.images)
  .filter((img) => !img.complete || img.naturalWidth === 0)
  .map((img) => (img.alt || img.src).slice(0, 80));
"""


def available() -> str | None:
    """None when the browser can run, else what is missing and how to get it."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        return (
            f"{' and '.join(missing)} not found: run `make setup` (installs the Debian "
            "packages chromium and chromium-driver)"
        )
    return None


@contextmanager
def chromium(width: int, height: int = 900) -> Iterator[webdriver.Chrome]:
    """A headless Chromium whose layout viewport is ``width`` x ``height`` CSS pixels."""
    problem = available()
    if problem:
        raise RuntimeError(problem)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--window-size={max(width, 500)},{height}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {
                "width": width,
                "height": height,
                "deviceScaleFactor": 1,
                "mobile": width < 600,
            },
        )
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()


def requests_made(driver: webdriver.Chrome) -> list[str]:
    """Every URL requested since the last call (data: URLs included)."""
    urls = []
    for entry in driver.get_log("performance"):
        message: dict[str, Any] = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def overflowing(driver: webdriver.Chrome) -> list[str]:
    """Elements past the viewport's right edge outside a scrolling box."""
    result: list[str] = driver.execute_script(_OVERFLOWING_JS)
    return result


def broken_images(driver: webdriver.Chrome) -> list[str]:
    """Images that have not loaded (alt text or the start of the src)."""
    result: list[str] = driver.execute_script(_BROKEN_IMAGES_JS)
    return result


def full_page_png(driver: webdriver.Chrome, path: Path, max_height: int = 6000) -> Path:
    """Screenshot of the page from the top, as tall as the page (at most ``max_height``)."""
    width, height = driver.execute_script(
        "return [document.documentElement.clientWidth, document.documentElement.scrollHeight]"
    )
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": min(height, max_height), "scale": 1},
        },
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))
    return path
