"""report.html in a real Chromium, opened from disk at a desktop and a phone width.

Checked on a report the evaluation code writes from small synthetic data here, and on the
committed docs/results/evaluation/report.html when there is one: every link of the table of
contents (and every other in-page link) has its target, and clicking a contents entry
scrolls to it; nothing sticks out sideways outside a scrolling box; every figure has loaded
and opens at its full size when clicked; the viewport meta tag is honoured on the phone;
the page asks for nothing but file: and data: URLs. Needs Debian's chromium and
chromium-driver (``make setup``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By

from evaluation.report import write_report
from tests import browser
from tests.test_evaluation_report import synthetic_evaluation

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "docs" / "results" / "evaluation" / "report.html"


@pytest.fixture(scope="module")
def synthetic_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("browser-report") / "eval"
    return write_report(synthetic_evaluation(three=True), out) / "report.html"


@pytest.fixture(params=["synthetic", "committed"])
def report_html(request: pytest.FixtureRequest, synthetic_report: Path) -> Path:
    if request.param == "committed":
        if not COMMITTED.is_file():
            pytest.skip(f"no committed report at {COMMITTED.relative_to(REPO)}")
        return COMMITTED
    return synthetic_report


@pytest.fixture(params=[browser.DESKTOP, browser.PHONE], ids=["desktop", "phone"])
def page(request: pytest.FixtureRequest, report_html: Path) -> Iterator[tuple[Chrome, int]]:
    width = request.param
    with browser.chromium(width) as driver:
        driver.get(report_html.as_uri())
        yield driver, width


def in_page_targets(driver: Chrome) -> list[str]:
    hrefs = driver.execute_script(
        "return Array.from(document.querySelectorAll('a[href^=\"#\"]'))"
        ".map((a) => a.getAttribute('href'))"
    )
    return [h[1:] for h in hrefs]


def test_every_in_page_link_has_its_target(page: tuple[Chrome, int]) -> None:
    driver, _ = page
    targets = in_page_targets(driver)
    missing = driver.execute_script(
        "return arguments[0].filter((id) => !document.getElementById(id))", targets
    )
    assert targets and missing == []
    contents = driver.find_elements(By.CSS_SELECTOR, "nav#contents a")
    headings = driver.find_elements(By.CSS_SELECTOR, "h2[id], h3[id]")
    # Every section and subsection heading is listed in the contents, in page order.
    assert [a.get_attribute("href").split("#")[1] for a in contents] == [
        h.get_attribute("id") for h in headings
    ]
    assert {h.tag_name for h in headings} == {"h2", "h3"}
    assert any(h.text.startswith("Model: ") for h in headings)


def test_clicking_a_contents_entry_scrolls_to_its_heading(page: tuple[Chrome, int]) -> None:
    driver, _ = page
    entries = driver.find_elements(By.CSS_SELECTOR, "nav#contents a")
    assert len(entries) >= 8
    for entry in entries:
        target = entry.get_attribute("href").split("#")[1]
        driver.execute_script("window.scrollTo(0, 0)")
        entry.click()
        top, at_bottom, hash_ = driver.execute_script(
            "const el = document.getElementById(arguments[0]);"
            "const root = document.documentElement;"
            "return [el.getBoundingClientRect().top,"
            " window.scrollY + window.innerHeight >= root.scrollHeight - 2, location.hash]",
            target,
        )
        assert hash_ == f"#{target}"
        # At the top of the window, or as near as the end of the page allows.
        assert 0 <= top <= 40 or (at_bottom and 0 <= top < 900), (target, top)


def test_nothing_overflows_and_the_viewport_is_honoured(page: tuple[Chrome, int]) -> None:
    driver, width = page
    assert driver.execute_script("return window.innerWidth") == width
    assert driver.execute_script("return document.documentElement.clientWidth") == width
    assert browser.overflowing(driver) == []
    # Wide tables scroll inside their own box instead of widening the page.
    tables = driver.find_elements(By.CSS_SELECTOR, "table")
    assert tables and all(
        t.find_element(By.XPATH, "..").get_attribute("class") == "table-scroll" for t in tables
    )


def test_every_image_loads_and_nothing_comes_from_the_network(
    page: tuple[Chrome, int],
) -> None:
    driver, _ = page
    assert driver.execute_script("return document.images.length") >= 5
    assert browser.broken_images(driver) == []
    urls = browser.requests_made(driver)
    assert urls and all(u.startswith(("file:", "data:")) for u in urls), [
        u[:80] for u in urls if not u.startswith(("file:", "data:"))
    ]


def test_a_figure_opens_at_full_size_and_closes(page: tuple[Chrome, int]) -> None:
    driver, width = page
    # The widest figure: shrunk to the column on a phone, at its own size once opened.
    image = max(
        driver.find_elements(By.CSS_SELECTOR, "figure img"),
        key=lambda i: int(i.get_attribute("naturalWidth")),
    )
    natural = int(image.get_attribute("naturalWidth"))
    figure = image.find_element(By.XPATH, "ancestor::figure")
    assert image.rect["width"] <= width
    image.click()
    assert driver.execute_script("return location.hash") == f"#{figure.get_attribute('id')}"
    assert figure.value_of_css_property("position") == "fixed"
    assert image.rect["width"] == pytest.approx(natural, abs=1)
    assert browser.overflowing(driver) == []  # the open figure scrolls inside itself
    figure.find_element(By.CSS_SELECTOR, "a.close").click()
    assert figure.value_of_css_property("position") == "static"
    assert image.rect["width"] <= width
