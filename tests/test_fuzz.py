"""No input reaches a 5xx: property-based tests of every parser; and schemathesis against the
live ``/docs.json``, which finds no 5xx and no disagreement between the document and the service.

The parsers (bytes → pixels) get arbitrary bytes, JSON documents of any shape and depth,
``.npy`` headers that lie about their shape or dtype, mutated images and multipart forms
with odd parts; each must return pixels or raise InputError with a 4xx and a detail for a
person (no object repr). The cases these found are plain regression tests at the end.

The schemathesis run is bounded for CI (``FMNIST_FUZZ_EXAMPLES`` per operation, default
40); a longer one by hand::

    FMNIST_FUZZ_EXAMPLES=1000 FMNIST_FUZZ_PARSER_EXAMPLES=5000 \\
        .venv/bin/python -m pytest tests/test_fuzz.py
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from service.schemas import BOOL_PATTERN, STRIP_WHITESPACE
from service.v2 import parse_infer_request
from service.validation import (
    FALSE_WORDS,
    TRUE_WORDS,
    InputError,
    decode_image,
    parse_bool,
    pixels_from_json,
    pixels_from_npy,
)
from tests.conftest import ApiClient, StubBackend

PARSER_EXAMPLES = int(os.environ.get("FMNIST_FUZZ_PARSER_EXAMPLES", "150"))
FAST = settings(
    max_examples=PARSER_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
REPR = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")


def survives(parse: Callable[[], Any]) -> None:
    """``parse()`` returns, or fails as a client's mistake that a person can read."""
    try:
        parse()
    except InputError as exc:
        assert 400 <= exc.status < 500, exc
        assert exc.reason and re.fullmatch(r"[a-z_]+", exc.reason), exc.reason
        assert exc.detail and not REPR.search(exc.detail), exc.detail


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats()
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=60,
)


def dumps(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


# --- JSON batches ------------------------------------------------------------------------------


@FAST
@given(json_values)
def test_json_batch_any_document(value: Any) -> None:
    survives(lambda: pixels_from_json(dumps({"pixels": value, "model": value}), 4))
    survives(lambda: pixels_from_json(dumps(value), 4))


@FAST
@given(st.binary(max_size=200))
def test_json_batch_any_bytes(data: bytes) -> None:
    survives(lambda: pixels_from_json(data, 4))


@FAST
@given(
    st.integers(min_value=0, max_value=3),
    st.lists(st.integers(min_value=0, max_value=30), min_size=1, max_size=4),
    st.sampled_from([0, 255, 256, -1, 1.5, 1e300, 2**70, True, "1", None]),
)
def test_json_batch_near_misses(wrap: int, shape: list[int], value: Any) -> None:
    """Nested lists close to a valid batch: a wrong size somewhere, or one odd value."""
    doc: Any = np.zeros(shape, dtype=int).tolist()
    for _ in range(wrap):
        doc = [doc]
    flat = doc
    while isinstance(flat, list) and flat and isinstance(flat[-1], list):
        flat = flat[-1]
    if isinstance(flat, list) and flat:
        flat[-1] = value
    survives(lambda: pixels_from_json(dumps({"pixels": doc}), 4))


# --- .npy files ----------------------------------------------------------------------------------

DTYPES = [
    "|u1",
    "|u1",
    "|u1",
    "|u1",
    "<u2",
    "<f8",
    "|b1",
    "|O",
    "<U3",
    "|V0",
    "|V8",
    "<c16",
    "[('a', '<u1')]",
    "zz",
]


@st.composite
def npy_files(draw: st.DrawFn) -> bytes:
    """A .npy header that may lie about its dtype, order or shape, then any payload."""
    descr = draw(st.sampled_from(DTYPES))
    order = draw(st.sampled_from(["False", "False", "True", "None"]))
    shape = draw(
        st.lists(st.one_of(st.integers(0, 40), st.sampled_from([-1, 28, 10**9, 2**62])), max_size=5)
    )
    shape_text = "(" + "".join(f"{d}, " for d in shape) + ")"
    header = f"{{'descr': {descr!r}, 'fortran_order': {order}, 'shape': {shape_text}, }}"
    if draw(st.integers(0, 9)) == 0:
        header = header.replace("'descr'", "'dscr'")
    header = header.ljust(((len(header) + 11) // 64 + 1) * 64 - 11) + "\n"
    version = draw(st.sampled_from([b"\x01\x00", b"\x02\x00", b"\x03\x00", b"\x09\x00"]))
    size = len(header).to_bytes(2 if version == b"\x01\x00" else 4, "little")
    if draw(st.integers(0, 9)) == 0:
        size = draw(st.binary(min_size=len(size), max_size=len(size)))
    payload = draw(st.binary(max_size=2 * 784 + 16))
    return b"\x93NUMPY" + version + size + header.encode("latin1") + payload


@FAST
@given(npy_files())
def test_npy_lying_headers(data: bytes) -> None:
    survives(lambda: pixels_from_npy(data, 4))


@FAST
@given(st.binary(max_size=300))
def test_npy_any_bytes(data: bytes) -> None:
    survives(lambda: pixels_from_npy(data, 4))
    survives(lambda: pixels_from_npy(b"\x93NUMPY" + data, 4))


# --- images ----------------------------------------------------------------------------


def encoded(fmt: str, mode: str) -> bytes:
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 30), dtype=np.uint8))
    buf = io.BytesIO()
    img.convert(mode).save(buf, format=fmt)
    return buf.getvalue()


IMAGES = [
    encoded(f, m)
    for f, m in [
        ("PNG", "L"),
        ("PNG", "RGBA"),
        ("JPEG", "RGB"),
        ("WEBP", "RGB"),
        ("BMP", "P"),
        ("GIF", "L"),
        ("TIFF", "I;16"),
    ]
]


@FAST
@given(
    st.sampled_from(IMAGES),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8),
    st.integers(0, 10**6),
)
def test_decode_mutated_images(image: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(image)
    for at, value in flips:
        data[at % len(data)] = value
    survives(lambda: decode_image(bytes(data[: max(1, len(data) - cut % len(data))])))


@FAST
@given(st.binary(max_size=200))
def test_decode_any_bytes(data: bytes) -> None:
    survives(lambda: decode_image(data))
    survives(lambda: decode_image(b"\x89PNG\r\n\x1a\n" + data))


# --- the Open Inference Protocol -------------------------------------------------------


@st.composite
def infer_requests(draw: st.DrawFn) -> Any:
    """Requests shaped like the protocol's, with any part swapped for anything."""
    shape = draw(st.lists(st.integers(-2, 30) | st.sampled_from([28, 10**12]), max_size=4))
    tensor: dict[str, Any] = {
        "name": draw(st.sampled_from(["pixels", "input", 7])),
        "datatype": draw(st.sampled_from(["FP32", "UINT8", "BYTES", "fp32", None])),
        "shape": shape,
        "data": draw(st.lists(st.integers(-5, 300) | st.floats(), max_size=50) | json_values),
    }
    if draw(st.booleans()):
        tensor["parameters"] = draw(
            st.fixed_dictionaries({"binary_data_size": st.integers(-1, 2000) | json_values})
            | json_values
        )
    doc: dict[str, Any] = {"inputs": draw(st.sampled_from([[tensor], [tensor, tensor], tensor]))}
    if draw(st.booleans()):
        doc["outputs"] = draw(json_values | st.just([{"name": "probabilities"}]))
    if draw(st.booleans()):
        doc["id"] = draw(json_values)
    if draw(st.booleans()):
        doc["parameters"] = draw(json_values)
    return doc


@FAST
@given(infer_requests(), st.binary(max_size=100), st.none() | st.text(max_size=6))
def test_v2_infer_requests(doc: Any, tail: bytes, length: str | None) -> None:
    body = dumps(doc)
    survives(lambda: parse_infer_request(body, None, 4))
    survives(lambda: parse_infer_request(body + tail, str(len(body)), 4))
    survives(lambda: parse_infer_request(body + tail, length, 4))


@FAST
@given(json_values)
def test_v2_any_document(value: Any) -> None:
    survives(lambda: parse_infer_request(dumps(value), None, 4))


# --- boolean options (invert) and the document's pattern for them ----------------------------


def test_strip_whitespace_is_what_str_strip_removes() -> None:
    assert set(STRIP_WHITESPACE) == {c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace()}


def _accepted(raw: str) -> bool:
    try:
        parse_bool("invert", raw)
    except InputError:
        return False
    return True


@FAST
@given(
    st.lists(
        st.sampled_from([*TRUE_WORDS, *FALSE_WORDS, "TRUE", "oN", "x", "tru", "2", ""])
        | st.sampled_from(STRIP_WHITESPACE)
        | st.text(max_size=3),
        max_size=4,
    ).map("".join)
)
def test_bool_pattern_accepts_what_parse_bool_accepts(raw: str) -> None:
    """/docs.json's pattern for invert (query and form) and parse_bool agree on every string."""
    assert bool(re.search(BOOL_PATTERN, raw)) == _accepted(raw), repr(raw)


# --- multipart forms and raw bodies through the app ---------------------------------------------


@st.composite
def multipart_bodies(draw: st.DrawFn) -> tuple[bytes, str]:
    boundary = draw(st.sampled_from(["b0undary", "x", "a" * 70]))
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.sampled_from(["image", "array", "model", "invert", "", "imäge", 'a"b']))
        headers = [f'Content-Disposition: form-data; name="{name}"']
        if draw(st.booleans()):
            headers[0] += f'; filename="{draw(st.text(max_size=5))}"'
        if draw(st.booleans()):
            headers.append(f"Content-Type: {draw(st.sampled_from(['image/png', 'x/y', '']))}")
        if draw(st.booleans()):
            headers = [draw(st.text(max_size=20))]
        data = draw(st.sampled_from([b"", IMAGES[0], b"true", b"deeper"]) | st.binary(max_size=40))
        parts.append("\r\n".join(headers).encode("utf-8", "surrogatepass") + b"\r\n\r\n" + data)
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + p + b"\r\n" for p in parts)
    body += draw(st.sampled_from([b"--" + boundary.encode() + b"--\r\n", b"", b"--"]))
    content_type = draw(
        st.sampled_from(
            [
                f"multipart/form-data; boundary={boundary}",
                f'multipart/form-data; boundary="{boundary}"',
                "multipart/form-data",
                "multipart/form-data; boundary=other",
            ]
        )
    )
    return body, content_type


@pytest.fixture(scope="module")
def module_api() -> ApiClient:
    return ApiClient(StubBackend(max_batch_size=4, max_body_bytes=50_000))


def answered_in_contract(resp: Any, v2: bool = False) -> None:
    assert resp.status_code < 500, resp.text
    if resp.status_code >= 400:
        body = resp.json()
        assert set(body) == ({"error"} if v2 else {"error", "detail"}), body
        assert not REPR.search(json.dumps(body)), body


@settings(max_examples=max(60, PARSER_EXAMPLES // 5), deadline=None, database=None)
@given(multipart_bodies(), st.sampled_from(["/classify", "/classify_npy"]))
def test_odd_multipart_forms(module_api: ApiClient, form: tuple[bytes, str], path: str) -> None:
    body, content_type = form
    answered_in_contract(
        module_api.post(path, content=body, headers={"content-type": content_type})
    )


@settings(max_examples=max(60, PARSER_EXAMPLES // 5), deadline=None, database=None)
@given(
    st.binary(max_size=120) | json_values.map(dumps),
    st.sampled_from(["/classify", "/classify_batch", "/classify_npy", "/v2/models/baseline/infer"]),
    st.sampled_from(["application/json", "image/png", "text/plain", "", "multipart/form-data"]),
    st.sampled_from(["", "?model=deeper", "?invert=%FF", "?model=&invert=1", "?model=%00"]),
)
def test_any_body_on_any_route(
    module_api: ApiClient, body: bytes, path: str, content_type: str, query: str
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    resp = module_api.post(path + query, content=body, headers=headers)
    answered_in_contract(resp, v2=path.startswith("/v2"))


# --- regression cases the fuzzers found ------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[" * 100_000, "invalid_json"),  # RecursionError in the json module
        (b'{"pixels": ' + b"[" * 3000 + b"]" * 3000 + b"}", "invalid_json"),
        (b'{"pixels": ' + b"[" * 500 + b"]" * 500 + b"}", "wrong_shape"),  # over 64 dimensions
        (dumps({"pixels": [[[2**70] * 28] * 28]}), "out_of_range"),  # beyond int64
    ],
)
def test_json_regressions(body: bytes, reason: str) -> None:
    with pytest.raises(InputError) as excinfo:
        pixels_from_json(body, 4)
    assert excinfo.value.reason == reason


def npy_header(descr: str, shape: str, version: bytes = b"\x01\x00") -> bytes:
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}".ljust(117)
    return b"\x93NUMPY" + version + (118).to_bytes(2, "little") + header.encode() + b"\n"


@pytest.mark.parametrize(
    ("data", "reason", "words"),
    [
        # A header that promises 784 GB over a 10-byte payload: refused before allocating.
        (npy_header("|u1", "(1000000000, 28, 28)") + b"\0" * 10, "batch_too_large", "at most"),
        (npy_header("|u1", "(2, 28, 28)") + b"\0" * 10, "invalid_npy", "holds 10 bytes"),
        (npy_header("|u1", "(1, 28, 28)") + b"\0" * 785, "invalid_npy", "holds 785 bytes"),
        (npy_header("|O", "(1, 28, 28)"), "wrong_dtype", "uint8"),
    ],
)
def test_npy_regressions(data: bytes, reason: str, words: str) -> None:
    with pytest.raises(InputError) as excinfo:
        pixels_from_npy(data, 4)
    assert excinfo.value.reason == reason and words in excinfo.value.detail


def test_multipart_without_its_closing_boundary(module_api: ApiClient) -> None:
    """Starlette's parser left such a part's spooled file unclosed (a ResourceWarning)."""
    body = b'--x\r\nContent-Disposition: form-data; name="image"; filename="a"\r\n\r\ndata'
    resp = module_api.post(
        "/classify", content=body, headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_form"
    assert "closing boundary" in resp.json()["detail"]


def test_unidentified_image_detail_has_no_repr() -> None:
    with pytest.raises(InputError) as excinfo:
        decode_image(b"hello world")
    assert excinfo.value.detail == (
        "the file is not a readable image (not an image format Pillow knows); "
        "expected PNG, JPEG, WebP or BMP bytes"
    )


# --- schemathesis against the live /docs.json ---------------------------------------------------

# schemathesis' settings: the hooks that teach it what the document cannot say, and 413 as a
# refusal (tests/schemathesis.toml says why).
SCHEMATHESIS_CONFIG = Path(__file__).with_name("schemathesis.toml")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_docs_json_and_the_service_agree(onnx_models: dict[str, Path], tmp_path: Path) -> None:
    """Every operation in the document, positive and negative data, every check schemathesis
    has (``--checks all``): no 5xx; every answer as documented (status, content type, schema,
    headers); what the document calls valid is accepted and what it calls invalid is refused;
    405 for undocumented methods. Seeded and bounded: ~15 s on 2 cores at 40 examples."""
    from loadtests.launch import REPO_ROOT, bentoml_server

    examples = os.environ.get("FMNIST_FUZZ_EXAMPLES", "40")
    env = {
        "FMNIST_MODEL_DIR": str(onnx_models["baseline"].parent),
        "FMNIST_WORKERS": "1",
        # A small batch limit, so that schemathesis reaches it (and one past it) cheaply; the
        # hooks draw .npy and binary tensors of at most 2 images (MAX_IMAGES).
        "FMNIST_MAX_BATCH_SIZE": "2",
        "BENTOML_HOME": str(tmp_path / "home"),
    }
    with bentoml_server(env, log_path=tmp_path / "serve.log") as url:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "--config-file",
                str(SCHEMATHESIS_CONFIG),
                "run",
                f"{url}/docs.json",
                "--checks",
                "all",
                "--max-examples",
                examples,
                "--workers",
                "1",  # its threads race in CPython's ast module (SystemError) with more
                "--generation-database",
                "none",
                "--seed",
                "12",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=200,
            cwd=tmp_path,  # its reports and caches stay out of the repository
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},  # the hooks: tests.*, service.*
        )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
