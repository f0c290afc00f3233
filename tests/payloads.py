"""Request bodies the HTTP tests send, and the table of every client mistake.

tests/test_http_api.py sends the whole table in-process; tests/test_service_server.py
sends a few of its rows to a real ``bentoml serve``. :func:`bad_inputs` builds the rows
for the limits the server under test was started with.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image


def encode(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def gif() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (28, 28)).save(buf, format="GIF")
    return buf.getvalue()


GRADIENT = np.tile(np.arange(28, dtype=np.uint8) * 9, (28, 1))
GOOD_IMAGE = encode(GRADIENT)
NOISY_IMAGE = encode(np.random.default_rng(7).integers(0, 256, (64, 64)))
ONE = np.zeros((28, 28), dtype=int).tolist()

# (name, path, httpx kwargs, status, reason, words the detail must contain)
BadInput = tuple[str, str, dict[str, Any], int, str, str]


def bad_inputs(max_batch: int, max_body: int) -> list[BadInput]:
    """Every client mistake, for a server with these batch and body limits."""
    MAX_BATCH, MAX_BODY = max_batch, max_body  # noqa: N806 (read as the limits below)
    return [
        (
            "corrupt image",
            "/classify",
            {"files": {"image": ("x.png", NOISY_IMAGE[: len(NOISY_IMAGE) // 2], "image/png")}},
            400,
            "corrupt_image",
            "PNG, JPEG, WebP or BMP",
        ),
        (
            "non-image bytes",
            "/classify",
            {"files": {"image": ("x.png", b"hello world", "image/png")}},
            400,
            "corrupt_image",
            "not a readable image",
        ),
        (
            "non-image raw body",
            "/classify",
            {"content": b"hello world", "headers": {"content-type": "image/png"}},
            400,
            "corrupt_image",
            "not a readable image",
        ),
        (
            "empty image file",
            "/classify",
            {"files": {"image": ("x.png", b"", "image/png")}},
            400,
            "empty_body",
            "empty",
        ),
        (
            "empty raw body",
            "/classify",
            {"content": b"", "headers": {"content-type": "image/jpeg"}},
            400,
            "empty_body",
            "empty",
        ),
        (
            "empty body",
            "/classify",
            {"content": b"", "headers": {"content-type": "multipart/form-data; boundary=x"}},
            400,
            "empty_body",
            "empty",
        ),
        (
            "malformed multipart",
            "/classify",
            {"content": b"garbage", "headers": {"content-type": "multipart/form-data"}},
            400,
            "invalid_form",
            "multipart",
        ),
        (
            "gif image",
            "/classify",
            {"files": {"image": ("x.gif", gif(), "image/gif")}},
            415,
            "unsupported_image_format",
            "GIF",
        ),
        (
            "gif raw body",
            "/classify",
            {"content": gif(), "headers": {"content-type": "image/png"}},
            415,
            "unsupported_image_format",
            "GIF",
        ),
        (
            "no image field",
            "/classify",
            {"files": {"picture": ("x.png", GOOD_IMAGE, "image/png")}},
            400,
            "missing_field",
            "'image'",
        ),
        (
            "image as a text field",
            "/classify",
            {"files": {"x": ("x.png", b"", "image/png")}, "data": {"image": "not a file"}},
            400,
            "missing_field",
            "a text field",
        ),
        (
            "wrong content type /classify",
            "/classify",
            {"json": {"image": "x"}},
            415,
            "wrong_content_type",
            "multipart/form-data",
        ),
        (
            "no content type /classify",
            "/classify",
            {"content": GOOD_IMAGE},
            415,
            "wrong_content_type",
            "image/png",
        ),
        (
            "wrong content type /classify_batch",
            "/classify_batch",
            {"content": b"pixels", "headers": {"content-type": "text/plain"}},
            415,
            "wrong_content_type",
            "application/json",
        ),
        (
            "empty raw .npy body",
            "/classify_npy",
            {"content": b"", "headers": {"content-type": "application/x-npy"}},
            400,
            "empty_body",
            ".npy",
        ),
        (
            "raw .npy body not an .npy",
            "/classify_npy",
            {"content": b"\x89PNG....", "headers": {"content-type": "application/x-npy"}},
            400,
            "invalid_npy",
            ".npy",
        ),
        (
            "unknown model, raw .npy body",
            "/classify_npy?model=vgg",
            {
                "content": npy(np.zeros((1, 28, 28), np.uint8)),
                "headers": {"content-type": "application/x-npy"},
            },
            404,
            "unknown_model",
            "baseline, deeper",
        ),
        (
            "wrong content type /classify_npy",
            "/classify_npy",
            {"content": npy(np.zeros((1, 28, 28), np.uint8))},
            415,
            "wrong_content_type",
            "'array'",
        ),
        (
            "empty JSON body",
            "/classify_batch",
            {"content": b"", "headers": {"content-type": "application/json"}},
            400,
            "empty_body",
            "empty",
        ),
        (
            "invalid JSON",
            "/classify_batch",
            {"content": b"{oops", "headers": {"content-type": "application/json"}},
            400,
            "invalid_json",
            "not valid JSON",
        ),
        (
            "wrong shape",
            "/classify_batch",
            {"json": {"pixels": [[[0] * 27] * 28]}},
            400,
            "wrong_shape",
            "[N, 28, 28]",
        ),
        (
            "single image not in a list",
            "/classify_batch",
            {"json": {"pixels": ONE}},
            400,
            "wrong_shape",
            "wrap a single image",
        ),
        (
            "out of range",
            "/classify_batch",
            {"json": {"pixels": [[[300] * 28] * 28]}},
            400,
            "out_of_range",
            "0-255",
        ),
        (
            "non-numbers",
            "/classify_batch",
            {"json": {"pixels": [[["x"] * 28] * 28]}},
            400,
            "not_a_number",
            "numbers 0-255",
        ),
        (
            "NaN",
            "/classify_batch",
            {"content": b'{"pixels": [[[NaN]]]}', "headers": {"content-type": "application/json"}},
            400,
            "not_a_number",
            "NaN",
        ),
        ("empty batch", "/classify_batch", {"json": {"pixels": []}}, 400, "empty_batch", "N >= 1"),
        (
            "batch over limit (JSON)",
            "/classify_batch",
            {"json": {"pixels": [ONE] * (MAX_BATCH + 1)}},
            413,
            "batch_too_large",
            f"at most {MAX_BATCH}",
        ),
        (
            "batch over limit (npy)",
            "/classify_npy",
            {"files": {"array": ("a.npy", npy(np.zeros((MAX_BATCH + 1, 28, 28), np.uint8)), "x")}},
            413,
            "batch_too_large",
            f"at most {MAX_BATCH}",
        ),
        (
            "body over limit",
            "/classify",
            {"files": {"image": ("x.png", b"\0" * (MAX_BODY + 1), "image/png")}},
            413,
            "body_too_large",
            f"at most {MAX_BODY:,}",
        ),
        (
            "raw body over limit",
            "/classify",
            {"content": b"\0" * (MAX_BODY + 1), "headers": {"content-type": "image/png"}},
            413,
            "body_too_large",
            f"at most {MAX_BODY:,}",
        ),
        (
            "npy wrong dtype",
            "/classify_npy",
            {"files": {"array": ("a.npy", npy(np.zeros((1, 28, 28), np.float64)), "x")}},
            400,
            "wrong_dtype",
            "uint8",
        ),
        (
            "npy corrupt",
            "/classify_npy",
            {"files": {"array": ("a.npy", b"\x93NUMPYxx", "x")}},
            400,
            "invalid_npy",
            ".npy",
        ),
        (
            "unknown model /classify",
            "/classify",
            {"files": {"image": ("x.png", GOOD_IMAGE, "image/png")}, "data": {"model": "resnet"}},
            404,
            "unknown_model",
            "baseline, deeper",
        ),
        (
            "unknown model in the query",
            "/classify?model=resnet",
            {"content": GOOD_IMAGE, "headers": {"content-type": "image/png"}},
            404,
            "unknown_model",
            "baseline, deeper",
        ),
        (
            "unknown model /classify_batch",
            "/classify_batch",
            {"json": {"pixels": [ONE], "model": "resnet"}},
            404,
            "unknown_model",
            "baseline, deeper",
        ),
        (
            "unknown model /classify_npy",
            "/classify_npy",
            {
                "files": {"array": ("a.npy", npy(np.zeros((1, 28, 28), np.uint8)), "x")},
                "data": {"model": "vgg"},
            },
            404,
            "unknown_model",
            "baseline, deeper",
        ),
        (
            "bad invert flag",
            "/classify",
            {"files": {"image": ("x.png", GOOD_IMAGE, "image/png")}, "data": {"invert": "maybe"}},
            400,
            "invalid_option",
            "true or false",
        ),
        (
            "bad invert query parameter",
            "/classify?invert=perhaps",
            {"content": GOOD_IMAGE, "headers": {"content-type": "image/png"}},
            400,
            "invalid_option",
            "true or false",
        ),
    ]
