"""The demo page (/ui) in a real Chromium against a real ``bentoml serve`` of three models.

At a desktop and a phone width: a bundled example (chosen with the keyboard) and an uploaded
PNG are classified by every served model, and the page shows exactly what the API answers
for that image (top class, confidence, ten probabilities) with a latency; nothing sticks
out sideways, every image loads, and the page asks nothing of any origin but the service.
A stroke drawn on the canvas is classified as the 28 x 28 white-on-black PNG it is; a file
that is not an image shows the API's own error. Needs Debian's chromium and
chromium-driver (``make setup``).
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from selenium.webdriver import ActionChains, Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from loadtests.launch import bentoml_server
from service.ui import EXAMPLES_DIR
from tests import browser

pytestmark = pytest.mark.slow

WAIT_S = 30
DROP_JS = """
const [b64, name] = arguments;
const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
const data = new DataTransfer();
data.items.add(new File([bytes], name, {type: 'image/png'}));
const drop = document.getElementById('drop');
drop.dispatchEvent(new DragEvent('drop', {dataTransfer: data, bubbles: true, cancelable: true}));
"""


@pytest.fixture(scope="module")
def server(
    onnx_models_three: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    home = tmp_path_factory.mktemp("bentoml-home-ui")
    env = {
        "FMNIST_MODEL_DIR": str(onnx_models_three["baseline"].parent),
        "FMNIST_WORKERS": "1",
        "BENTOML_HOME": str(home),
    }
    with bentoml_server(env, log_path=home / "serve.log") as url:
        yield url


@pytest.fixture(scope="module")
def served(server: str) -> list[str]:
    return [m["name"] for m in httpx.get(server + "/models", timeout=30).json()["models"]]


def open_page(driver: Chrome, server: str, models: list[str]) -> None:
    driver.get(server + "/ui")
    WebDriverWait(driver, WAIT_S).until(
        lambda d: (
            [c.get_attribute("data-model") for c in d.find_elements(By.CSS_SELECTOR, ".card")]
            == models
        )
    )


def wait_for_status(driver: Chrome, words: str) -> str:
    """The status line once it holds ``words`` (each classification ends with one)."""
    WebDriverWait(driver, WAIT_S).until(lambda d: words in d.find_element(By.ID, "status").text)
    return str(driver.find_element(By.ID, "status").text)


def api_answers(
    server: str, models: list[str], image: bytes, invert: bool = False
) -> dict[str, dict[str, Any]]:
    answers = {}
    for model in models:
        resp = httpx.post(
            server + "/classify",
            files={"image": ("x.png", image, "image/png")},
            data={"model": model, "invert": str(invert).lower()},
            timeout=30,
        )
        assert resp.status_code == 200, resp.text
        answers[model] = resp.json()
    return answers


def percent(text: str) -> float:
    match = re.fullmatch(r"(?:confidence )?(\d+\.\d) %", text.strip())
    assert match, text
    return float(match.group(1))


def check_cards_show(driver: Chrome, answers: dict[str, dict[str, Any]]) -> None:
    """Every card shows its model's API answer: top class, confidence, ten bars, latency."""
    for model, answer in answers.items():
        card = driver.find_element(By.CSS_SELECTOR, f'.card[data-model="{model}"]')
        assert card.get_attribute("data-state") == "done", model
        assert card.find_element(By.CSS_SELECTOR, ".top-class").text == answer["class_name"]
        shown = percent(card.find_element(By.CSS_SELECTOR, ".confidence").text)
        assert abs(shown - answer["confidence"] * 100) <= 0.051, model
        assert re.fullmatch(
            r"latency \d+\.\d ms \(round trip\)",
            card.find_element(By.CSS_SELECTOR, ".latency").text,
        ), model
        rows = card.find_elements(By.CSS_SELECTOR, ".bars li")
        assert [r.get_attribute("data-class") for r in rows] == list(answer["probabilities"])
        bar_width = rows[0].find_element(By.CSS_SELECTOR, ".bar").size["width"]
        for row in rows:
            p = answer["probabilities"][row.get_attribute("data-class")]
            assert abs(percent(row.find_element(By.CSS_SELECTOR, ".value").text) - p * 100) <= 0.051
            fill = row.find_element(By.CSS_SELECTOR, ".fill").size["width"]
            assert abs(fill - p * bar_width) <= 1.5, (model, row.text, fill, bar_width)
        top = card.find_elements(By.CSS_SELECTOR, ".bars li.top")
        assert [t.get_attribute("data-class") for t in top] == [answer["class_name"]]


def check_page_health(driver: Chrome, server: str) -> None:
    assert browser.overflowing(driver) == []
    assert browser.broken_images(driver) == []
    requested = browser.requests_made(driver)
    assert {f"{server}/models", f"{server}/classify"} <= set(requested)  # the log is read
    foreign = [
        url
        for url in requested
        if not (url.startswith(server + "/") or url.startswith("blob:" + server + "/"))
    ]
    assert foreign == [], "the page asked something of another origin"


@pytest.mark.parametrize("width", [browser.DESKTOP, browser.PHONE])
def test_an_example_and_an_uploaded_png_at_each_width(
    server: str, served: list[str], tmp_path: Path, width: int
) -> None:
    assert len(served) == 3
    with browser.chromium(width) as driver:
        open_page(driver, server, served)
        # A bundled example, chosen with the keyboard; the focused button shows a ring.
        button = driver.find_element(By.CSS_SELECTOR, '.example[data-src$="/bag.png"]')
        button.send_keys(Keys.ENTER)
        assert driver.execute_script(
            "const s = getComputedStyle(document.activeElement);"
            "return document.activeElement === arguments[0] && s.outlineStyle !== 'none'"
            " && parseFloat(s.outlineWidth) >= 2",
            button,
        )
        wait_for_status(driver, "the example “Bag”: classified by 3 models")
        assert button.get_attribute("aria-pressed") == "true"
        check_cards_show(
            driver, api_answers(server, served, (EXAMPLES_DIR / "bag.png").read_bytes())
        )
        # An upload: an RGB photo-sized PNG (the service pads and resizes it).
        upload = tmp_path / "upload.png"
        rgb = np.random.default_rng(width).integers(0, 256, (60, 45, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(upload)
        driver.find_element(By.ID, "file").send_keys(str(upload))
        wait_for_status(driver, "“upload.png”: classified by 3 models")
        assert button.get_attribute("aria-pressed") == "false"
        check_cards_show(driver, api_answers(server, served, upload.read_bytes()))
        assert driver.find_element(By.CSS_SELECTOR, "#preview img").get_attribute("alt")
        assert not driver.find_element(By.ID, "error").is_displayed()
        check_page_health(driver, server)


def canvas_png(driver: Chrome) -> bytes:
    data_url = driver.execute_script("return document.getElementById('pad').toDataURL()")
    return base64.b64decode(data_url.split(",", 1)[1])


def canvas_pixels(driver: Chrome) -> np.ndarray:
    with Image.open(io.BytesIO(canvas_png(driver))) as image:
        return np.asarray(image.convert("L"))


def test_a_stroke_on_the_canvas_and_a_dropped_file_are_classified(
    server: str, served: list[str]
) -> None:
    with browser.chromium(browser.DESKTOP) as driver:
        open_page(driver, server, served)
        pad = driver.find_element(By.ID, "pad")
        assert pad.size == {"width": 224, "height": 224}  # 28 x 28, shown 8 times larger
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", pad)
        (
            ActionChains(driver)
            .move_to_element_with_offset(pad, -60, -68)
            .click_and_hold()
            .move_by_offset(120, 0)
            .move_by_offset(0, 140)
            .move_by_offset(-120, 0)
            .release()
            .perform()
        )
        wait_for_status(driver, "your drawing: classified by 3 models")
        # What was sent is the canvas: 28 x 28, white strokes on black.
        png = canvas_png(driver)
        pixels = canvas_pixels(driver)
        assert pixels.shape == (28, 28)
        assert pixels[0, 0] == 0 and pixels[-1, -1] == 0 and (pixels > 200).sum() >= 20
        assert pixels[5, 10:18].min() > 200  # the top stroke, where it was drawn
        check_cards_show(driver, api_answers(server, served, png))
        driver.find_element(By.ID, "clear").click()
        assert canvas_pixels(driver).max() == 0
        # A file dropped on the drop zone (the drag itself is the browser's; the drop event
        # carries the file as it would).
        dropped = (EXAMPLES_DIR / "sneaker.png").read_bytes()
        driver.execute_script(DROP_JS, base64.b64encode(dropped).decode(), "dropped.png")
        wait_for_status(driver, "“dropped.png”: classified by 3 models")
        check_cards_show(driver, api_answers(server, served, dropped))
        # "invert" sends the same image again with invert=true.
        driver.find_element(By.ID, "invert").click()
        wait_for_status(driver, "“dropped.png” (inverted): classified by 3 models")
        check_cards_show(driver, api_answers(server, served, dropped, invert=True))
        check_page_health(driver, server)


def test_a_file_that_is_not_an_image_shows_the_apis_error(
    server: str, served: list[str], tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image\n")
    expected = httpx.post(
        server + "/classify", files={"image": ("notes.txt", notes.read_bytes())}, timeout=30
    )
    assert expected.status_code == 400
    body = expected.json()
    with browser.chromium(browser.PHONE) as driver:
        open_page(driver, server, served)
        driver.find_element(By.ID, "file").send_keys(str(notes))
        wait_for_status(driver, "“notes.txt”: not classified")
        error = driver.find_element(By.ID, "error")
        assert error.is_displayed()
        assert error.text == f"The API answered 400 ({body['error']}): {body['detail']}"
        for card in driver.find_elements(By.CSS_SELECTOR, ".card"):
            assert card.get_attribute("data-state") == "error"
            assert card.find_element(By.CSS_SELECTOR, ".failure").text == error.text
        check_page_health(driver, server)


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def test_the_screenshots_script(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """scripts/screenshots.py (what `make screenshots` runs) against this server."""
    from scripts import screenshots

    report = tmp_path / "report.html"
    report.write_text(
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><title>r</title>'
        f"</head><body><h1>Report</h1><p>{'words ' * 3000}</p></body></html>"
    )
    out = tmp_path / "images"
    argv = ["--url", server, "--report", str(report), "--out", str(out)]
    assert screenshots.main([*argv, "--report-height", "700"]) == 0
    sizes = {p.name: png_size(p) for p in out.glob("*.png")}
    assert sizes.pop("report_desktop.png") == (browser.DESKTOP, 700)
    assert sizes.pop("report_phone.png") == (browser.PHONE, 700)
    assert {name: w for name, (w, _) in sizes.items()} == {
        "ui_desktop.png": browser.DESKTOP,
        "ui_phone.png": browser.PHONE,
    }
    assert "classified by 3 models" in capsys.readouterr().out
    # A page laid out for a desktop only, and a page that cannot classify, are told apart.
    report.write_text("<!doctype html><title>r</title><p>no viewport meta</p>")
    warnings = screenshots.shoot_report(report, browser.PHONE, tmp_path / "r.png", 500)
    assert warnings == ["laid out 980 px wide on a 390 px screen (no viewport meta?)"]
    with pytest.raises(screenshots.ShotError, match="no bundled example 'nope.png'"):
        screenshots.shoot_ui(server, "nope.png", browser.DESKTOP, tmp_path / "u.png")
