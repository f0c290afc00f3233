"""Screenshots of what people see: the demo page (/ui) and the evaluation report, each at a
desktop (1400 px) and a phone (390 px) width, in headless Chromium (tests/browser.py).

    make screenshots                  # serves artifacts/onnx on a free port, then runs this
    .venv/bin/python -m scripts.screenshots --url http://127.0.0.1:3000   # a running service

Writes, under --out (docs/images):
  ui_desktop.png, ui_phone.png          the whole page after a bundled example (--example)
                                        is classified by every served model
  report_desktop.png, report_phone.png  the top --report-height px of --report, opened from
                                        disk (docs/results/evaluation/report.html)

Run from the repository root as a module (``-m``), so that ``tests.browser`` imports. Waits
up to --ready-timeout seconds for the service's /readyz. Exit 0 when all four are written;
1 when the page did not classify the example, overflows sideways, shows a broken image or
asks another origin for anything (what went wrong on one line); 2 when the service never
got ready or a file is missing. The report's own layout problems are printed as warnings.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import httpx
from selenium.common.exceptions import TimeoutException
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests import browser

log = logging.getLogger("screenshots")
ROOT = Path(__file__).resolve().parent.parent
WIDTHS = {"desktop": browser.DESKTOP, "phone": browser.PHONE}


class ShotError(RuntimeError):
    """What the page did wrong; the script prints it and exits 1."""


def wait_ready(url: str, timeout_s: float) -> None:
    """Poll ``url``/readyz until 200, logging every 10 s; TimeoutError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    next_note = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > next_note:
            log.info("waiting for %s/readyz", url)
            next_note += 10
        time.sleep(0.5)
    raise TimeoutError(f"{url}/readyz did not answer 200 within {timeout_s:.0f} s")


def problems(driver: Chrome, width: int, origin: str | None) -> list[str]:
    """A layout wider than the screen, sideways overflow, broken images and (with
    ``origin``) requests to anywhere else."""
    laid_out = driver.execute_script("return document.documentElement.clientWidth")
    found = []
    if laid_out != width:
        found.append(f"laid out {laid_out} px wide on a {width} px screen (no viewport meta?)")
    found += [f"overflows: {e}" for e in browser.overflowing(driver)]
    found += [f"broken image: {i}" for i in browser.broken_images(driver)]
    if origin is not None:
        found += [
            f"requested another origin: {u}"
            for u in browser.requests_made(driver)
            if not u.startswith((origin + "/", f"blob:{origin}/"))
        ]
    return found


def shoot_ui(url: str, example: str, width: int, path: Path, timeout_s: float = 60) -> str:
    """The demo page at ``width`` after ``example`` is classified; returns the status line."""
    with browser.chromium(width) as driver:
        driver.get(f"{url}/ui")
        wait = WebDriverWait(driver, timeout_s)
        try:
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".card"))
            models = len(driver.find_elements(By.CSS_SELECTOR, ".card"))
            buttons = driver.find_elements(By.CSS_SELECTOR, f'.example[data-src$="/{example}"]')
            if not buttons:
                raise ShotError(f"the page has no bundled example {example!r}")
            buttons[0].click()
            wait.until(
                lambda d: (
                    "classified by" in d.find_element(By.ID, "status").text
                    or d.find_element(By.ID, "error").is_displayed()
                )
            )
        except TimeoutException as exc:
            status = driver.find_element(By.ID, "status").text
            raise ShotError(f"/ui at {width} px: nothing classified ({status!r})") from exc
        status = str(driver.find_element(By.ID, "status").text)
        error = driver.find_element(By.ID, "error")
        if error.is_displayed():
            raise ShotError(f"/ui at {width} px: {error.text}")
        if f"classified by {models} model" not in status:
            raise ShotError(f"/ui at {width} px: {status}")
        found = problems(driver, width, url)
        if found:
            raise ShotError(f"/ui at {width} px: {'; '.join(found)}")
        driver.execute_script("window.scrollTo(0, 0)")
        browser.full_page_png(driver, path)
        return status


def shoot_report(report: Path, width: int, path: Path, height: int) -> list[str]:
    """The top ``height`` px of the report at ``width``; returns its layout problems."""
    with browser.chromium(width) as driver:
        driver.get(report.resolve().as_uri())
        WebDriverWait(driver, 30).until(
            lambda d: d.execute_script("return document.readyState") == "complete"
        )
        browser.full_page_png(driver, path, max_height=height)
        return problems(driver, width, None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--url", required=True, help="the running service, e.g. http://127.0.0.1:3000")
    p.add_argument("--example", default="ankle_boot.png", help="the bundled example to classify")
    p.add_argument(
        "--report", type=Path, default=ROOT / "docs" / "results" / "evaluation" / "report.html"
    )
    p.add_argument("--report-height", type=int, default=2000, help="px of the report to keep")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    p.add_argument("--ready-timeout", type=float, default=120.0, help="seconds")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    url = args.url.rstrip("/")
    problem = browser.available()
    if problem or not args.report.is_file():
        print(f"screenshots: error: {problem or f'{args.report} not found'}", file=sys.stderr)
        return 2
    try:
        wait_ready(url, args.ready_timeout)
    except TimeoutError as exc:
        print(f"screenshots: error: {exc}", file=sys.stderr)
        return 2
    try:
        for name, width in WIDTHS.items():
            path = args.out / f"ui_{name}.png"
            status = shoot_ui(url, args.example, width, path)
            print(f"{path} ({width} px): {status}")
    except ShotError as exc:
        print(f"screenshots: error: {exc}", file=sys.stderr)
        return 1
    for name, width in WIDTHS.items():
        path = args.out / f"report_{name}.png"
        for warning in shoot_report(args.report, width, path, args.report_height):
            print(f"screenshots: warning: {args.report.name} at {width} px: {warning}")
        print(f"{path} ({width} px)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
