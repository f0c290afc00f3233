"""decode_image beyond "it returns 28x28": the pixel limit, invert, padding, EXIF, alpha
and 16-bit images, each checked on the exact pixels it produces.

tests/test_service_validation.py covers formats, modes and the corrupt-file answers.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from typing import Any

import numpy as np
import pytest
from PIL import Image

from service import validation
from service.validation import InputError, decode_image


def encode(img: Image.Image, fmt: str = "PNG", **options: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **options)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that announces width x height 8-bit gray pixels and holds none of them.

    The size checks read only the header, so this stands for a decompression bomb
    without building one.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def gradient(width: int = 28, height: int = 28) -> Image.Image:
    """Gray levels that differ from pixel to pixel, so any change shows."""
    values = (np.arange(width * height) * 7 % 256).astype(np.uint8)
    return Image.fromarray(values.reshape(height, width), mode="L")


# --- the decompression-bomb guard ------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height"),
    [
        (10_000, 5_001),  # just over our 50 MP limit
        (10_000, 10_000),  # over Pillow's warning threshold (~89 MP)
        (20_000, 10_000),  # over Pillow's error threshold (~179 MP)
    ],
)
def test_an_image_over_the_pixel_limit_is_refused_as_too_large(width: int, height: int) -> None:
    with pytest.raises(InputError) as excinfo:
        decode_image(png_header_only(width, height))
    assert (excinfo.value.status, excinfo.value.reason) == (413, "image_too_large")
    assert "expected at most 50,000,000" in excinfo.value.detail


def test_the_pixel_limit_is_inclusive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validation, "MAX_IMAGE_PIXELS", 28 * 28)
    assert decode_image(encode(gradient(28, 28))).shape == (28, 28)
    with pytest.raises(InputError) as excinfo:
        decode_image(encode(gradient(28, 29)))
    assert excinfo.value.detail == "image is 28x29 pixels (expected at most 784)"


def test_an_image_at_the_limits_header_is_not_refused_for_its_size() -> None:
    # 10,000 x 5,000 is exactly 50 MP: the header passes, the missing pixel data does not.
    with pytest.raises(InputError) as excinfo:
        decode_image(png_header_only(10_000, 5_000))
    assert excinfo.value.reason == "corrupt_image"


# --- invert, padding, resizing ---------------------------------------------------------


def test_a_28x28_image_comes_back_pixel_for_pixel() -> None:
    img = gradient()
    np.testing.assert_array_equal(decode_image(encode(img)), np.asarray(img))


def test_invert_flips_every_pixel() -> None:
    img = gradient()
    plain = decode_image(encode(img))
    inverted = decode_image(encode(img), invert=True)
    np.testing.assert_array_equal(inverted, 255 - plain)
    np.testing.assert_array_equal(decode_image(encode(img), invert=False), plain)


def test_invert_comes_before_the_black_padding() -> None:
    black_wide = Image.new("L", (28, 14), 0)
    inverted = decode_image(encode(black_wide), invert=True)
    assert inverted[7:21].min() == 255  # the image, inverted to white
    assert inverted[:7].max() == 0 and inverted[21:].max() == 0  # the padding stays black


@pytest.mark.parametrize(("width", "height"), [(28, 14), (14, 28)])
def test_padding_centres_the_image_on_black(width: int, height: int) -> None:
    pixels = decode_image(encode(Image.new("L", (width, height), 255)))
    expected = np.zeros((28, 28), dtype=np.uint8)
    if width > height:
        expected[7:21, :] = 255
    else:
        expected[:, 7:21] = 255
    np.testing.assert_array_equal(pixels, expected)


def test_a_large_image_is_resized_with_its_content_in_place() -> None:
    big = Image.new("L", (280, 280), 0)
    big.paste(255, (0, 0, 140, 280))  # left half white
    pixels = decode_image(encode(big)).astype(int)
    assert pixels.shape == (28, 28)
    assert pixels[:, :13].min() >= 250 and pixels[:, 15:].max() <= 5


def test_downscaling_is_lanczos() -> None:
    big = gradient(56, 56)
    expected = np.asarray(big.resize((28, 28), Image.Resampling.LANCZOS))
    np.testing.assert_array_equal(decode_image(encode(big)), expected)


def test_a_large_jpeg_decodes_like_the_same_png() -> None:
    big = gradient(56, 56).resize((560, 560), Image.Resampling.NEAREST)
    as_png = decode_image(encode(big, "PNG")).astype(int)
    as_jpeg = decode_image(encode(big, "JPEG", quality=95)).astype(int)
    assert np.abs(as_png - as_jpeg).mean() < 8


# --- EXIF, alpha, 16-bit ---------------------------------------------------------------


def test_exif_orientation_is_applied() -> None:
    img = Image.new("L", (56, 28), 0)
    img.paste(255, (0, 0, 28, 28))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    rotated = decode_image(encode(img, exif=exif))
    expected = decode_image(encode(img.transpose(Image.Transpose.ROTATE_270)))
    np.testing.assert_array_equal(rotated, expected)
    assert not np.array_equal(rotated, decode_image(encode(img)))


@pytest.mark.parametrize(
    ("img", "options"),
    [
        (Image.new("RGBA", (28, 28), (255, 255, 255, 0)), {}),
        (Image.new("LA", (28, 28), (255, 0)), {}),
        (Image.new("L", (28, 28), 200), {"transparency": 200}),
        (Image.new("RGB", (28, 28), (255, 255, 255)), {"transparency": (255, 255, 255)}),
    ],
    ids=["RGBA", "LA", "L+tRNS", "RGB+tRNS"],
)
def test_transparent_pixels_become_black(img: Image.Image, options: dict[str, Any]) -> None:
    assert decode_image(encode(img, **options)).max() == 0


@pytest.mark.parametrize(("gray", "alpha", "expected"), [(255, 128, 128), (200, 64, 50)])
def test_semi_transparent_pixels_are_blended_onto_black(
    gray: int, alpha: int, expected: int
) -> None:
    pixels = decode_image(encode(Image.new("LA", (28, 28), (gray, alpha))))
    assert pixels.min() == pixels.max() == expected  # gray * alpha / 255


def test_opaque_alpha_keeps_the_gray_level() -> None:
    assert decode_image(encode(Image.new("LA", (28, 28), (180, 255)))).tolist() == (
        [[180] * 28] * 28
    )


def test_a_palette_image_with_a_transparent_index() -> None:
    img = Image.new("P", (28, 28), 1)
    img.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    img.paste(0, (0, 0, 14, 28))
    assert decode_image(encode(img)).max() == 255  # index 1 is white
    pixels = decode_image(encode(img, transparency=1))
    assert pixels.max() == 0  # index 1 is now transparent: black


def test_16_bit_gray_is_scaled_to_8_bits() -> None:
    levels = np.zeros((28, 28), dtype=np.uint16)
    levels[:, 7:14], levels[:, 14:21], levels[:, 21:] = 257, 32768, 65535
    img = Image.fromarray(levels)
    assert img.mode == "I;16"
    pixels = decode_image(encode(img))
    assert pixels[0].tolist() == [0] * 7 + [1] * 7 + [127] * 7 + [255] * 7


def test_16_bit_gray_is_scaled_by_the_full_16_bit_range() -> None:
    # A dim 16-bit image stays dim: 32768 is half of 65535, not the image's maximum.
    img = Image.fromarray(np.full((28, 28), 32768, dtype=np.uint16))
    assert decode_image(encode(img)).max() == 127
    assert decode_image(encode(img), invert=True).min() == 128


@pytest.mark.parametrize(
    ("rgb", "gray"), [((255, 0, 0), 76), ((0, 255, 0), 150), ((0, 0, 255), 29)]
)
def test_colour_becomes_luminance(rgb: tuple[int, int, int], gray: int) -> None:
    # ITU-R 601-2 luma, Pillow's "L": R * 299/1000 + G * 587/1000 + B * 114/1000
    pixels = decode_image(encode(Image.new("RGB", (28, 28), rgb)))
    assert pixels.shape == (28, 28) and pixels.min() == pixels.max() == gray


def test_corrupt_exif_does_not_stop_decoding() -> None:
    # An EXIF tag that points past the end of the file: Pillow warns and skips it.
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    exif = b"MM\x00*" + struct.pack(">IHHHII", 8, 1, 0x010E, 2, 100, 0x1000) + b"\x00" * 4
    png = encode(Image.new("L", (28, 28), 100))
    at = png.find(b"IDAT") - 4
    data = png[:at] + chunk(b"eXIf", exif) + png[at:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's warning is not what is tested here
        pixels = decode_image(data)
    assert pixels.min() == pixels.max() == 100


def test_the_answers_a_client_reads() -> None:
    with pytest.raises(InputError) as excinfo:
        decode_image(b"")
    assert excinfo.value.detail == (
        "the image file is empty (expected PNG, JPEG, WebP or BMP bytes)"
    )
    with pytest.raises(InputError) as excinfo:
        decode_image(b"not an image")
    assert excinfo.value.detail == (
        "the file is not a readable image (not an image format Pillow knows); "
        "expected PNG, JPEG, WebP or BMP bytes"
    )
    truncated = encode(Image.new("L", (200, 200), 77))[:-60]
    with pytest.raises(InputError) as excinfo:
        decode_image(truncated)
    assert excinfo.value.detail.startswith("the file is not a readable image (OSError: ")
    assert excinfo.value.detail.endswith("); expected PNG, JPEG, WebP or BMP bytes")
    with pytest.raises(InputError) as excinfo:
        decode_image(encode(Image.new("L", (28, 28)), "GIF"))
    assert excinfo.value.detail == (
        "image format GIF is not accepted (expected PNG, JPEG, WebP or BMP)"
    )
