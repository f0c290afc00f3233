"""Fast, in-process checks of input validation, image decoding, settings and ONNX facts."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.onnx_file import NotAnOnnxFile, read_opset
from service.settings import SettingsError, load_settings
from service.validation import (
    InputError,
    decode_image,
    parse_bool,
    pixels_from_json,
    pixels_from_npy,
)
from tests.payloads import npy

REPO = Path(__file__).resolve().parent.parent


def encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def reason_of(excinfo: pytest.ExceptionInfo[InputError]) -> tuple[int, str]:
    return excinfo.value.status, excinfo.value.reason


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP"])
@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "1"])
def test_decode_image_any_format_and_mode(fmt: str, mode: str) -> None:
    if fmt == "JPEG" and mode in ("RGBA", "P"):
        pytest.skip("JPEG cannot store this mode")
    img = Image.new("RGB", (90, 60), (255, 255, 255)).convert(mode)
    pixels = decode_image(encode(img, fmt))
    assert pixels.shape == (28, 28) and pixels.dtype == np.uint8


def test_decode_image_pads_to_square_and_inverts() -> None:
    white = Image.new("L", (56, 28), 255)  # wide white image: padding adds black bands
    plain = decode_image(encode(white, "PNG"))
    assert plain[14, 14] == 255 and plain[0, 14] == 0  # centre white, top band black
    inverted = decode_image(encode(white, "PNG"), invert=True)
    assert inverted[14, 14] == 0 and inverted.max() == 0


def test_decode_image_transparent_becomes_black() -> None:
    img = Image.new("RGBA", (28, 28), (255, 255, 255, 0))
    assert decode_image(encode(img, "PNG")).max() == 0


@pytest.mark.parametrize(
    ("data", "status", "reason"),
    [
        (b"", 400, "empty_body"),
        (b"this is text, not an image", 400, "corrupt_image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, 400, "corrupt_image"),
        (encode(Image.new("L", (28, 28)), "GIF"), 415, "unsupported_image_format"),
    ],
)
def test_decode_image_rejects(data: bytes, status: int, reason: str) -> None:
    with pytest.raises(InputError) as excinfo:
        decode_image(data)
    assert reason_of(excinfo) == (status, reason)
    assert "expected" in excinfo.value.detail


def test_truncated_png_is_corrupt() -> None:
    data = encode(Image.new("L", (200, 200), 77), "PNG")
    with pytest.raises(InputError) as excinfo:
        decode_image(data[: len(data) // 2])
    assert reason_of(excinfo) == (400, "corrupt_image")


def test_pixels_from_json_accepts_n_28_28() -> None:
    body = (
        b'{"pixels": ' + str(np.full((3, 28, 28), 255).tolist()).encode() + b', "model": "deeper"}'
    )
    pixels, model = pixels_from_json(body, 1024)
    assert pixels.shape == (3, 28, 28) and pixels.dtype == np.float32 and model == "deeper"


def _json(pixels: object) -> bytes:
    import json

    return json.dumps({"pixels": pixels}).encode()


GOOD = np.zeros((28, 28), dtype=int).tolist()


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"", 400, "empty_body"),
        (b"{not json", 400, "invalid_json"),
        (b'{"images": []}', 400, "missing_field"),
        (b"[1, 2]", 400, "missing_field"),
        (_json([]), 400, "empty_batch"),
        (_json(GOOD), 400, "wrong_shape"),
        (_json([[[0] * 27] * 28]), 400, "wrong_shape"),
        (_json([GOOD, GOOD[:27]]), 400, "wrong_shape"),
        (_json([[[256] * 28] * 28]), 400, "out_of_range"),
        (_json([[[-1] * 28] * 28]), 400, "out_of_range"),
        (_json([[["a"] * 28] * 28]), 400, "not_a_number"),
        (_json([[[None] * 28] * 28]), 400, "not_a_number"),
        (_json([[[True] * 28] * 28]), 400, "not_a_number"),
        (
            b'{"pixels": [[' + b",".join([b"[" + b",".join([b"NaN"] * 28) + b"]"] * 28) + b"]]}",
            400,
            "not_a_number",
        ),
        (_json([GOOD] * 5), 413, "batch_too_large"),
    ],
)
def test_pixels_from_json_rejects(body: bytes, status: int, reason: str) -> None:
    with pytest.raises(InputError) as excinfo:
        pixels_from_json(body, max_batch=4)
    assert reason_of(excinfo) == (status, reason)
    assert "expected" in excinfo.value.detail or "at most" in excinfo.value.detail


def test_pixels_from_npy() -> None:
    array = np.arange(2 * 784, dtype=np.int64).reshape(2, 1, 28, 28) % 256
    pixels = pixels_from_npy(npy(array.astype(np.uint8)), 1024)
    assert pixels.shape == (2, 28, 28)
    np.testing.assert_array_equal(pixels, array[:, 0])


@pytest.mark.parametrize(
    ("data", "status", "reason"),
    [
        (b"", 400, "empty_body"),
        (b"\x93NUMPY garbage", 400, "invalid_npy"),
        (npy(np.array([{"a": 1}], dtype=object)), 400, "wrong_dtype"),  # never unpickled
        (npy(np.zeros((2, 28, 28), dtype=np.float32)), 400, "wrong_dtype"),
        (npy(np.zeros((2, 28, 27), dtype=np.uint8)), 400, "wrong_shape"),
        (npy(np.zeros((0, 28, 28), dtype=np.uint8)), 400, "empty_batch"),
        (npy(np.zeros((5, 28, 28), dtype=np.uint8)), 413, "batch_too_large"),
    ],
)
def test_pixels_from_npy_rejects(data: bytes, status: int, reason: str) -> None:
    with pytest.raises(InputError) as excinfo:
        pixels_from_npy(data, max_batch=4)
    assert reason_of(excinfo) == (status, reason)


def test_bool_options() -> None:
    assert parse_bool("invert", "TRUE") and not parse_bool("invert", None)
    with pytest.raises(InputError):
        parse_bool("invert", "maybe")


def test_settings_from_env() -> None:
    s = load_settings(
        {"FMNIST_DEFAULT_MODEL": "deeper", "FMNIST_WORKERS": "3", "FMNIST_MAX_BATCH_SIZE": "16"}
    )
    assert (s.default_model, s.workers, s.max_batch_size) == ("deeper", 3, 16)
    # The documented defaults (docs/api.md), pinned.
    d = load_settings({"FMNIST_MODEL_DIR": ""})
    assert (d.model_dir, d.models, d.default_model, d.ort_provider) == (None, None, None, "auto")
    assert (d.batching_max_batch_size, d.batching_max_wait_ms, d.batching_max_queue) == (
        64,
        0.0,
        256,
    )
    assert (d.max_batch_size, d.max_body_bytes) == (1024, 10 * 1024 * 1024)
    assert (d.reuse_port, d.access_log, d.tracing, d.debug) == (True, False, False, False)
    assert d.keepalive_requests == 100
    assert d.batching_max_wait_s == 0.0
    with pytest.raises(SettingsError, match="FMNIST_WORKERS='two': Input should be a valid int"):
        load_settings({"FMNIST_WORKERS": "two"})
    with pytest.raises(SettingsError, match="FMNIST_BATCHING_MAX_QUEUE='0': .*greater than or eq"):
        load_settings({"FMNIST_BATCHING_MAX_QUEUE": "0"})
    with pytest.raises(SettingsError, match="FMNIST_ORT_PROVIDER=.tpu.: expected auto, cpu"):
        load_settings({"FMNIST_ORT_PROVIDER": "tpu"})
    message = ""
    try:
        load_settings({"FMNIST_WORKERS": "0", "FMNIST_MAX_BODY_BYTES": "x"})
    except SettingsError as exc:
        message = str(exc)
    assert "FMNIST_WORKERS='0'" in message and "FMNIST_MAX_BODY_BYTES='x'" in message
    assert "\n" not in message  # one line, every bad variable named


def test_read_opset(onnx_models: dict[str, Path], tmp_path: Path) -> None:
    assert read_opset(onnx_models["baseline"]) == 18
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(onnx_models["baseline"].read_bytes()[:-7])  # cut inside a field
    with pytest.raises(NotAnOnnxFile, match="broken.onnx is not a valid ONNX file"):
        read_opset(broken)


def test_service_imports_without_torch(onnx_models: dict[str, Path]) -> None:
    """The service must not need torch: import it with torch made unimportable."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'torchvision'):\n"
        "            raise ImportError('torch is blocked in this test')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import service.service, service.import_models, loadtests.launch\n"
        "svc = service.service.FashionMNISTService.inner()\n"
        "assert svc.__is_ready__()\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'torch'], 'torch imported'\n"
        "print('ok')\n"
    )
    env = {
        "FMNIST_MODEL_DIR": str(onnx_models["baseline"].parent),
        "PATH": "/usr/bin:/bin",
        "HOME": str(REPO),
        "BENTOML_DO_NOT_TRACK": "true",
    }
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok")
