"""Numeric batches, JSON and .npy bodies, and the option parsers: the boundaries and the
exact answers a client reads (docs/api.md's error body: status, reason, detail).

tests/test_service_validation.py covers which reason each kind of bad body gets.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import UnidentifiedImageError

from service.validation import (
    InputError,
    _first_odd_value,
    check_batch,
    describe,
    load_json,
    parse_bool,
    pixels_from_json,
    pixels_from_npy,
)
from tests.payloads import npy


def answer(excinfo: pytest.ExceptionInfo[InputError]) -> tuple[int, str, str]:
    return excinfo.value.status, excinfo.value.reason, excinfo.value.detail


def test_input_error_carries_status_reason_and_detail() -> None:
    error = InputError(413, "batch_too_large", "too many")
    assert isinstance(error, ValueError)
    assert (error.status, error.reason, error.detail) == (413, "batch_too_large", "too many")
    assert str(error) == "batch_too_large: too many"


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        (
            UnidentifiedImageError("cannot identify image file <_io.BytesIO object at 0x7f>"),
            "not an image format Pillow knows",
        ),
        (ValueError("bad <PIL.Image object at 0x7f00ab> header"), "ValueError: bad header"),
        (OSError("<object at 0xdead>"), "OSError"),
        (ValueError(), "ValueError"),
    ],
)
def test_describe_an_exception_without_object_reprs(exc: BaseException, text: str) -> None:
    assert describe(exc) == text


# --- options ---------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["1", "true", "yes", "on", " TRUE ", "On"])
def test_parse_bool_true(raw: str) -> None:
    assert parse_bool("invert", raw) is True


@pytest.mark.parametrize("raw", [None, "", "  ", "0", "false", "no", "off", " OFF "])
def test_parse_bool_false(raw: str | None) -> None:
    assert parse_bool("invert", raw) is False


def test_parse_bool_refuses_anything_else() -> None:
    with pytest.raises(InputError) as excinfo:
        parse_bool("invert", "maybe")
    assert answer(excinfo) == (
        400,
        "invalid_option",
        "invert='maybe' is not a boolean (expected true or false)",
    )


# --- check_batch -----------------------------------------------------------------------


def test_check_batch_accepts_the_full_range_and_the_largest_batch() -> None:
    pixels = np.zeros((4, 28, 28), dtype=np.int64)
    pixels[0, 0, 0], pixels[3, 27, 27] = 255, 0
    out = check_batch(pixels, max_batch=4, source="x")
    assert out.dtype == np.float32 and out.shape == (4, 28, 28)
    np.testing.assert_array_equal(out, pixels)


def test_check_batch_drops_the_channel_axis() -> None:
    pixels = np.arange(2 * 784).reshape(2, 1, 28, 28) % 256
    np.testing.assert_array_equal(check_batch(pixels, 8, "x"), pixels[:, 0])


def test_check_batch_keeps_float_pixels_as_they_are() -> None:
    pixels = np.full((1, 28, 28), 12.75, dtype=np.float32)
    out = check_batch(pixels, 8, "x")
    assert out.dtype == np.float32 and out[0, 0, 0] == 12.75


@pytest.mark.parametrize(
    ("shape", "detail"),
    [
        ((0,), "x holds no images (expected [N, 28, 28], N >= 1)"),
        ((0, 28, 28), "x holds no images (expected [N, 28, 28], N >= 1)"),
        ((2,), "x has shape [2]; expected [N, 28, 28] (or [N, 1, 28, 28])"),
        ((2, 0, 28), "x has shape [2, 0, 28]; expected [N, 28, 28] (or [N, 1, 28, 28])"),
        ((2, 2, 28, 28), "x has shape [2, 2, 28, 28]; expected [N, 28, 28] (or [N, 1, 28, 28])"),
        (
            (28, 28),
            "x has shape [28, 28] (wrap a single image in a list); "
            "expected [N, 28, 28] (or [N, 1, 28, 28])",
        ),
    ],
)
def test_check_batch_shapes(shape: tuple[int, ...], detail: str) -> None:
    with pytest.raises(InputError) as excinfo:
        check_batch(np.zeros(shape), 8, "x")
    reason = "empty_batch" if "no images" in detail else "wrong_shape"
    assert answer(excinfo) == (400, reason, detail)


def test_check_batch_one_image_too_many() -> None:
    with pytest.raises(InputError) as excinfo:
        check_batch(np.zeros((5, 28, 28)), 4, "x")
    assert answer(excinfo) == (
        413,
        "batch_too_large",
        "x holds 5 images; at most 4 per request are accepted",
    )


@pytest.mark.parametrize(("low", "high"), [(-1, 3), (0, 256), (-0.5, 255.5)])
def test_check_batch_range(low: float, high: float) -> None:
    pixels = np.full((1, 28, 28), 2.0)
    pixels[0, 0, 0], pixels[0, 1, 1] = low, high
    with pytest.raises(InputError) as excinfo:
        check_batch(pixels, 8, "x")
    assert answer(excinfo) == (
        400,
        "out_of_range",
        f"x holds values from {low:g} to {high:g}; expected pixel values 0-255",
    )


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_check_batch_refuses_nan_and_infinity(bad: float) -> None:
    pixels = np.zeros((1, 28, 28))
    pixels[0, 5, 5] = bad
    with pytest.raises(InputError) as excinfo:
        check_batch(pixels, 8, "x")
    assert answer(excinfo) == (
        400,
        "not_a_number",
        "x holds NaN or infinite values (expected numbers 0-255)",
    )


# --- JSON ------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b'{"images": []}', b"[1, 2]", b"7"])
def test_json_without_pixels(body: bytes) -> None:
    with pytest.raises(InputError) as excinfo:
        pixels_from_json(body, 4)
    assert answer(excinfo) == (
        400,
        "missing_field",
        'expected a JSON object with a "pixels" field ([N][28][28] numbers 0-255)',
    )


def test_json_without_a_model_gives_none() -> None:
    pixels, model = pixels_from_json(json.dumps({"pixels": [[[1] * 28] * 28]}).encode(), 4)
    assert pixels.shape == (1, 28, 28) and model is None


@pytest.mark.parametrize(
    ("body", "reason", "detail"),
    [
        (
            b" \n\t",
            "empty_body",
            'the request body is empty (expected JSON {"pixels": [N][28][28]})',
        ),
        (b'{"pixels": [Infinity]}', "not_a_number", "JSON holds Infinity (expected numbers 0-255)"),
        (
            b'{"pixels": [-Infinity]}',
            "not_a_number",
            "JSON holds -Infinity (expected numbers 0-255)",
        ),
        (b'{"pixels": "abc"}', "wrong_shape", '"pixels" is a str; expected a [N][28][28] list'),
        (b'{"pixels": {}}', "wrong_shape", '"pixels" is a dict; expected a [N][28][28] list'),
        (
            b'{"pixels": [[[0, "a", 1]]]}',
            "not_a_number",
            "\"pixels\" holds non-numbers ('a'); expected numbers 0-255",
        ),
        (
            b'{"pixels": [0, 1], "model": "deeper"}',
            "wrong_shape",
            '"pixels" has shape [2]; expected [N, 28, 28] (or [N, 1, 28, 28])',
        ),
    ],
)
def test_json_answers(body: bytes, reason: str, detail: str) -> None:
    with pytest.raises(InputError) as excinfo:
        pixels_from_json(body, 4)
    assert answer(excinfo) == (400, reason, detail)


def test_json_nested_too_deeply_is_invalid_json() -> None:
    with pytest.raises(InputError) as excinfo:
        pixels_from_json(b"[" * 100_000, 4)
    assert answer(excinfo) == (
        400,
        "invalid_json",
        'the body is JSON nested too deeply to read; expected {"pixels": [N][28][28]}',
    )


@pytest.mark.parametrize("body", [b"\xff\xfe{", b'{"pixels": [1,'])
def test_undecodable_json_is_invalid_json(body: bytes) -> None:
    with pytest.raises(InputError) as excinfo:
        pixels_from_json(body, 4)
    status, reason, detail = answer(excinfo)
    assert (status, reason) == (400, "invalid_json")
    assert detail.startswith("the body is not valid JSON (")
    assert detail.endswith('); expected {"pixels": [N][28][28]}')


def test_ragged_json_names_the_problem() -> None:
    body = json.dumps({"pixels": [[[0] * 28] * 28, [[0] * 28] * 27]}).encode()
    with pytest.raises(InputError) as excinfo:
        pixels_from_json(body, 4)
    status, reason, detail = answer(excinfo)
    assert (status, reason) == (400, "wrong_shape")
    assert detail.startswith('"pixels" is ragged (')
    assert detail.endswith("); expected [N][28][28] with every row 28 long")


@pytest.mark.parametrize(
    ("raw", "first"),
    [
        ([[1, 2.5], [3, "x"], ["y"]], "x"),  # the first in reading order
        ([[1, True], [None]], True),  # a JSON boolean is not a pixel value
        ([[1, 2], [None, "z"]], None),
        ([{"a": 1}, "b"], {"a": 1}),
    ],
)
def test_first_non_number(raw: list[object], first: object) -> None:
    assert _first_odd_value(raw) == (True, first)


def test_first_non_number_finds_nan_and_nothing_in_numbers() -> None:
    odd, found = _first_odd_value([[1, 2], [float("nan"), "a"]])
    assert odd and isinstance(found, float) and math.isnan(found)
    assert _first_odd_value([[0, 1.5], [255]]) == (False, None)


# --- .npy ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (b"", "the .npy file is empty (expected uint8 [N, 28, 28])"),
        (
            npy(np.zeros((1, 28, 28), dtype=bool)),
            "the .npy array has dtype bool; expected uint8 [N, 28, 28]",
        ),
        (
            npy(np.zeros((1, 28, 28), dtype=np.int64)),
            "the .npy array has dtype int64; expected uint8 [N, 28, 28]",
        ),
        (
            npy(np.zeros((28, 28), dtype=np.uint8)),
            "the .npy array has shape [28, 28] (wrap a single image in a list); "
            "expected [N, 28, 28] (or [N, 1, 28, 28])",
        ),
    ],
)
def test_npy_answers(data: bytes, detail: str) -> None:
    with pytest.raises(InputError) as excinfo:
        pixels_from_npy(data, 4)
    assert excinfo.value.detail == detail


def test_truncated_npy_is_invalid() -> None:
    data = npy(np.zeros((2, 28, 28), dtype=np.uint8))
    with pytest.raises(InputError) as excinfo:
        pixels_from_npy(data[:-10], 4)
    status, reason, detail = answer(excinfo)
    assert (status, reason) == (400, "invalid_npy")
    assert detail.endswith("; expected np.save of uint8 [N, 28, 28]")


def test_npy_accepts_the_largest_batch() -> None:
    data = npy(np.full((4, 1, 28, 28), 255, dtype=np.uint8))
    pixels = pixels_from_npy(data, 4)
    assert pixels.shape == (4, 28, 28) and pixels.dtype == np.float32 and pixels.min() == 255


def test_a_repeated_npy_header_is_parsed_once_and_read_the_same() -> None:
    from service.validation import _parse_npy_header, _parsed_npy_header

    first = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    again = np.full((2, 28, 28), 7, dtype=np.uint8)
    _parsed_npy_header.cache_clear()
    assert np.array_equal(pixels_from_npy(npy(first), 4), first)
    assert np.array_equal(pixels_from_npy(npy(again), 4), again)  # same header, new data
    info = _parsed_npy_header.cache_info()
    assert (info.misses, info.hits) == (1, 1)
    fortran = npy(np.asfortranarray(first))
    assert np.array_equal(pixels_from_npy(fortran, 4), first)  # its own header, own entry
    assert _parse_npy_header(fortran) == _parsed_npy_header(fortran[:128])


def test_an_npy_header_whose_length_field_lies_is_invalid() -> None:
    data = bytearray(npy(np.zeros((1, 28, 28), dtype=np.uint8)))
    data[8:10] = (60_000).to_bytes(2, "little")  # says the header runs past the file
    with pytest.raises(InputError) as excinfo:
        pixels_from_npy(bytes(data), 4)
    assert answer(excinfo)[:2] == (400, "invalid_npy")


@pytest.mark.parametrize(
    "body",
    [
        b'{"pixels": [[[0, 255.0, 1e2]]], "model": "deeper"}',
        b'{"model": "\\ud800", "pixels": []}',  # a lone surrogate: only json reads it
        b'{"pixels": [[[' + str(2**70).encode() + b"]]]}",  # beyond 64 bits
    ],
)
def test_json_bodies_read_as_json_reads_them(body: bytes) -> None:
    """orjson reads first; what it refuses, json reads. Integers beyond 64 bits come back
    as floats of the same size, which the range checks refuse all the same."""
    doc, expected = load_json(body, "x"), json.loads(body)
    assert doc == expected or doc["pixels"] == [[[float(2**70)]]]


def test_a_batch_of_integers_beyond_64_bits_is_out_of_range() -> None:
    body = json.dumps({"pixels": [[[2**70] * 28] * 28]}).encode()
    with pytest.raises(InputError) as excinfo:
        pixels_from_json(body, 4)
    assert excinfo.value.reason == "out_of_range"
