"""Turn untrusted request bytes into uint8 pixel batches, or say exactly what is wrong.

Every failure is an :class:`InputError` carrying the HTTP status, a short snake_case
``reason`` (the ``error`` field of docs/api.md's error body) and a ``detail`` that says
what was wrong and what is expected. Nothing here knows about HTTP frameworks.
"""

from __future__ import annotations

import functools
import io
import json
import math
import re
import warnings
from typing import Any

import numpy as np
import orjson
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "BMP"})
MAX_IMAGE_PIXELS = 50_000_000  # decompression-bomb guard (50 MP)
SIDE = 28


OBJECT_REPR = re.compile(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>")


def describe(exc: BaseException) -> str:
    """An exception for a person: its type and message, without object reprs."""
    if isinstance(exc, UnidentifiedImageError):
        return "not an image format Pillow knows"
    message = OBJECT_REPR.sub("", str(exc)).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


class InputError(ValueError):
    """A client mistake: maps to a 4xx answer ``{"error": reason, "detail": detail}``."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.status = status
        self.reason = reason
        self.detail = detail


# What parse_bool reads as a boolean, after str.strip() and str.lower() (the OpenAPI document
# states the same set as a pattern: service/schemas.py).
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def parse_bool(name: str, raw: str | None) -> bool:
    if raw is None or raw.strip() == "":
        return False
    value = raw.strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise InputError(
        400, "invalid_option", f"{name}={raw!r} is not a boolean (expected true or false)"
    )


def decode_image(data: bytes, invert: bool = False) -> np.ndarray:
    """Any PNG/JPEG/WebP/BMP → uint8 (28, 28): grayscale, padded square, resized.

    Transparent pixels become black (Fashion-MNIST garments are light on black); with
    ``invert`` a dark-on-light photo is flipped to light-on-dark before padding.
    """
    if not data:
        raise InputError(
            400, "empty_body", "the image file is empty (expected PNG, JPEG, WebP or BMP bytes)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img: Image.Image = Image.open(io.BytesIO(data))
            if img.format not in IMAGE_FORMATS:
                raise InputError(
                    415,
                    "unsupported_image_format",
                    f"image format {img.format} is not accepted (expected PNG, JPEG, WebP or BMP)",
                )
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise InputError(
                    413,
                    "image_too_large",
                    f"image is {img.width}x{img.height} pixels "
                    f"(expected at most {MAX_IMAGE_PIXELS:,})",
                )
            img.draft("L", (SIDE * 4, SIDE * 4))  # JPEG: decode at reduced size, much faster
            img = ImageOps.exif_transpose(img)
            if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
                rgba = img.convert("RGBA")
                black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
                gray = Image.alpha_composite(black, rgba).convert("L")
            elif img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                arr = np.asarray(img, dtype=np.float64)
                top = 65535.0 if img.mode.startswith("I") else max(float(arr.max()), 1.0)
                gray = Image.fromarray(np.clip(arr / top * 255.0, 0, 255).astype(np.uint8))
            else:
                gray = img.convert("L")
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own guard fires in Image.open, before ours, for images over ~89 MP:
        # the same refusal as ours, not a "corrupt" file.
        raise InputError(
            413,
            "image_too_large",
            f"image is too large ({exc}); expected at most {MAX_IMAGE_PIXELS:,} pixels",
        ) from exc
    except Exception as exc:  # noqa: BLE001
        # Pillow's decoders answer hostile bytes with many exception types (OSError,
        # SyntaxError, ValueError, struct.error, IndexError, ...): all mean "not readable".
        raise InputError(
            400,
            "corrupt_image",
            f"the file is not a readable image ({describe(exc)}); "
            "expected PNG, JPEG, WebP or BMP bytes",
        ) from exc
    if invert:
        gray = ImageOps.invert(gray)
    side = max(gray.size)
    if gray.size != (side, side):  # pad with black so garments keep their aspect ratio
        square = Image.new("L", (side, side), 0)
        square.paste(gray, ((side - gray.width) // 2, (side - gray.height) // 2))
        gray = square
    if gray.size != (SIDE, SIDE):
        gray = gray.resize((SIDE, SIDE), Image.Resampling.LANCZOS)
    return np.asarray(gray, dtype=np.uint8)


def check_shape(shape: tuple[int, ...], max_batch: int, source: str) -> None:
    """A batch's shape: [N, 28, 28] or [N, 1, 28, 28], 1 <= N <= max_batch."""
    if math.prod(shape) == 0 and (len(shape) == 1 or shape[0] == 0):
        raise InputError(
            400, "empty_batch", f"{source} holds no images (expected [N, 28, 28], N >= 1)"
        )
    images = shape[:1] + shape[2:] if len(shape) == 4 and shape[1] == 1 else shape
    if len(images) != 3 or images[1:] != (SIDE, SIDE):
        hint = " (wrap a single image in a list)" if shape == (SIDE, SIDE) else ""
        raise InputError(
            400,
            "wrong_shape",
            f"{source} has shape {list(shape)}{hint}; expected [N, 28, 28] (or [N, 1, 28, 28])",
        )
    if images[0] > max_batch:
        raise InputError(
            413,
            "batch_too_large",
            f"{source} holds {images[0]} images; at most {max_batch} per request are accepted",
        )


def check_batch(pixels: np.ndarray, max_batch: int, source: str) -> np.ndarray:
    """Check shape, batch size and range of a numeric array; returns float32 (N, 28, 28)."""
    check_shape(pixels.shape, max_batch, source)
    if pixels.ndim == 4:
        pixels = pixels[:, 0]
    if pixels.dtype.kind == "f" and not np.isfinite(pixels).all():
        raise InputError(
            400, "not_a_number", f"{source} holds NaN or infinite values (expected numbers 0-255)"
        )
    low, high = pixels.min(), pixels.max()
    if low < 0 or high > 255:
        raise InputError(
            400,
            "out_of_range",
            f"{source} holds values from {low:g} to {high:g}; expected pixel values 0-255",
        )
    return pixels.astype(np.float32, copy=False)


def _reject_constant(token: str) -> float:
    raise InputError(400, "not_a_number", f"JSON holds {token} (expected numbers 0-255)")


def load_json(body: bytes, expected: str) -> Any:
    """A JSON document, or an InputError that says what was wrong and shows ``expected``.

    NaN and Infinity tokens are refused (``not_a_number``); so is nesting deeper than the
    parser's recursion limit (``invalid_json``), which ``json`` reports as RecursionError.
    """
    if not body.strip():
        raise InputError(400, "empty_body", f"the request body is empty (expected JSON {expected})")
    try:
        # orjson (Rust) reads a 256-image batch in less than half json's time, and holds
        # the GIL, so the event loop, for that much less; it reads integers beyond 64 bits
        # as floats (so they fail the range checks). What it refuses, json reads again
        # below, to accept what json accepts and to say what is wrong in json's words.
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(
            400, "invalid_json", f"the body is not valid JSON ({exc}); expected {expected}"
        ) from exc
    except RecursionError as exc:
        raise InputError(
            400,
            "invalid_json",
            f"the body is JSON nested too deeply to read; expected {expected}",
        ) from exc


def pixels_from_json(body: bytes, max_batch: int) -> tuple[np.ndarray, Any]:
    """``{"pixels": [N][28][28], "model": optional}`` → (float32 (N, 28, 28), model)."""
    doc = load_json(body, '{"pixels": [N][28][28]}')
    if not isinstance(doc, dict) or "pixels" not in doc:
        raise InputError(
            400,
            "missing_field",
            'expected a JSON object with a "pixels" field ([N][28][28] numbers 0-255)',
        )
    raw = doc["pixels"]
    if not isinstance(raw, list):
        raise InputError(
            400, "wrong_shape", f'"pixels" is a {type(raw).__name__}; expected a [N][28][28] list'
        )
    try:
        pixels = np.asarray(raw)
    except ValueError as exc:  # ragged nesting
        raise InputError(
            400,
            "wrong_shape",
            f'"pixels" is ragged ({exc}); expected [N][28][28] with every row 28 long',
        ) from exc
    if pixels.dtype.kind not in "iuf":
        found, odd = _first_odd_value(raw)
        if not found:  # numbers all, but integers beyond 64 bits: numpy keeps them as objects
            raise InputError(
                400,
                "out_of_range",
                '"pixels" holds integers beyond 64 bits; expected pixel values 0-255',
            )
        raise InputError(
            400, "not_a_number", f'"pixels" holds non-numbers ({odd!r}); expected numbers 0-255'
        )
    return check_batch(pixels, max_batch, '"pixels"'), doc.get("model")


def _first_odd_value(raw: Any) -> tuple[bool, Any]:
    """(True, the first value in reading order that is not a pixel number) or (False, None)."""
    stack = [raw]
    while stack:
        x = stack.pop()
        if isinstance(x, list):
            stack.extend(reversed(x))
        elif (
            isinstance(x, bool)
            or not isinstance(x, int | float)
            or (isinstance(x, float) and math.isnan(x))
        ):
            return True, x
    return False, None


NPY_EXPECTED = "expected np.save of uint8 [N, 28, 28]"


NPY_MAGIC = b"\x93NUMPY"
NPY_CACHED_HEADER_BYTES = 1024  # numpy writes 128-byte headers; longer ones are not cached


def _npy_header(data: bytes) -> tuple[np.dtype[Any], tuple[int, ...], bool, int]:
    """A .npy file's header: (dtype, shape, fortran order, offset of the data).

    A client sends the same header with every request of one shape, so a header is parsed
    once (numpy's parser evaluates the header's text: ~2 % of a worker's time on 64-image
    requests) and then looked up by its bytes."""
    end = _npy_header_end(data)
    if end is not None and end <= min(len(data), NPY_CACHED_HEADER_BYTES):
        return _parsed_npy_header(data[:end])
    return _parse_npy_header(data)


def _npy_header_end(data: bytes) -> int | None:
    """Where a .npy header says it ends (magic, version, length field), if it says so."""
    if len(data) < 12 or not data.startswith(NPY_MAGIC):
        return None
    if data[6] == 1:
        return 10 + int.from_bytes(data[8:10], "little")
    if data[6] in (2, 3):
        return 12 + int.from_bytes(data[8:12], "little")
    return None


def _parse_npy_header(data: bytes) -> tuple[np.dtype[Any], tuple[int, ...], bool, int]:
    buf = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(buf)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(buf)
        elif version in ((2, 0), (3, 0)):  # 3.0 differs only in encoding a header's text
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(buf)
        else:
            raise ValueError(f"format version {version[0]}.{version[1]} is not one numpy writes")
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as exc:
        raise InputError(
            400, "invalid_npy", f"the file is not a readable .npy array ({exc}); {NPY_EXPECTED}"
        ) from exc
    return dtype, tuple(shape), bool(fortran), buf.tell()


# Only headers that parse are kept (an exception is not cached): at most 256 of them.
_parsed_npy_header = functools.lru_cache(maxsize=256)(_parse_npy_header)


def pixels_from_npy(data: bytes, max_batch: int) -> np.ndarray:
    """A ``.npy`` file of uint8 [N, 28, 28] or [N, 1, 28, 28] → float32 (N, 28, 28).

    The header is checked (dtype, shape, batch size, and that the data is exactly as long as
    it says) before any array is made, so a header that lies costs nothing.
    """
    if not data:
        raise InputError(400, "empty_body", "the .npy file is empty (expected uint8 [N, 28, 28])")
    dtype, shape, fortran, offset = _npy_header(data)
    if dtype != np.uint8:
        raise InputError(
            400,
            "wrong_dtype",
            f"the .npy array has dtype {dtype}; expected uint8 [N, 28, 28]",
        )
    source = "the .npy array"
    check_shape(shape, max_batch, source)
    count = math.prod(shape)
    if len(data) - offset != count:
        raise InputError(
            400,
            "invalid_npy",
            f"the .npy header declares shape {list(shape)} ({count:,} bytes) but the file holds "
            f"{len(data) - offset:,} bytes of data; {NPY_EXPECTED}",
        )
    array = np.frombuffer(data, dtype=np.uint8, count=count, offset=offset)
    return check_batch(array.reshape(shape, order="F" if fortran else "C"), max_batch, source)
