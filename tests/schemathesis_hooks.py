"""What /docs.json cannot say, taught to schemathesis: tests/schemathesis.toml loads this module
into the ``schemathesis run`` of tests/test_fuzz.py.

The document states every constraint JSON Schema can state (service/api_spec.py,
service/schemas.py), and the run keeps every check on. Four facts of the contract are beyond
JSON Schema. Without this module schemathesis' cases break them at random: the service
rightly answers 400 to data the document calls valid, and ``positive_data_acceptance`` fails
(as it did before this module, for each of them):

1. What a file is. ``format: binary`` admits any bytes; the service decodes an image or a
   .npy file. Bodies and form parts of ``image/png``, ``image/jpeg``, ``image/webp``,
   ``image/bmp`` and ``application/x-npy`` are real files drawn by hypothesis
   (``schemathesis.openapi.media_type``: schemathesis' way to say what a media type holds).
2. What ``application/octet-stream`` holds depends on the operation: a .npy file on
   ``/classify_npy``, the binary tensor data extension on ``/v2/models/.../infer`` (a JSON
   request, then the tensor's bytes). A media type strategy is one for all operations, so
   the bytes drawn there are made into that per operation (``before_generate_body``), when
   they are as long as the document's ``minLength`` (a shorter draw is left as drawn).
3. Relations between values of a v2 request. The binary extension's
   ``Inference-Header-Content-Length`` is the length of the body's JSON part. In a JSON
   request, ``data`` holds ``prod(shape)`` values, the shape's sizes are JSON integers as
   written (JSON Schema's integer admits ``6.0``, which the service reads as a float), and
   the header, sent, would split the body (it is left out). ``map_case`` completes a case
   so: a body only when the document calls it valid, a header only when it was drawn valid.
4. A form field wins over the query parameter of the same name (docs/api.md): the service
   never reads a query parameter that the form also sets, so a negative case whose invalid
   value is such a query parameter was accepted (``?invert=null`` beside a form field
   ``invert``). ``map_case`` takes the field out of the form (it is optional), so the query's
   value is the one the service reads, and must refuse.

schemathesis validates every JSON body and parameter a hook changed against the document
again, so a completed case is positive or negative by the document, not by this module.
Nothing is filtered out and no check is switched off or loosened.

What this costs: a file too short to be one is never sent as valid (rule 1 draws real files),
so the run cannot see a minLength missing from the document; tests/test_http_api.py pins
every binary payload's minLength instead.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import schemathesis
from hypothesis import strategies as st
from PIL import Image
from schemathesis.core.parameters import ParameterLocation
from schemathesis.transport.serialization import Binary

from fmnist.contract import IMAGE_SIDE, INPUT_NAME, PROBABILITIES_NAME
from service.api_spec import V2_BINARY_MIN_BYTES, V2_HEADER_LENGTH
from service.schemas import BOOL_PATTERN, NPY_MIN_BYTES
from service.validation import NPY_MAGIC

PIL_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP", "image/bmp": "BMP"}
NPY = "application/x-npy"
OCTETS = "application/octet-stream"
BOOL_TEXT = re.compile(BOOL_PATTERN)
FORM_OPTIONS = ("model", "invert")  # read from the form when it has them, else the query
# Images in a made file: N <= max_batch_size holds for the server tests/test_fuzz.py starts.
MAX_IMAGES = 2


def pixels_from(seed: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """uint8 pixels of ``shape``: ``seed`` repeated (a few drawn bytes vary them enough)."""
    return np.resize(np.frombuffer(seed or b"\0", dtype=np.uint8), shape)


def npy_file(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, pixels)
    return buf.getvalue()


# --- rule 1: files of the image types and of application/x-npy ----------------------------------


@st.composite
def image_files(draw: st.DrawFn, fmt: str) -> bytes:
    """A grayscale or RGB image in ``fmt``, 1-48 pixels a side (the service takes any)."""
    size = (draw(st.integers(1, 48)), draw(st.integers(1, 48)))
    channels = draw(st.sampled_from([(), (3,)]))
    pixels = pixels_from(draw(st.binary(max_size=32)), size + channels)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


@st.composite
def npy_files(draw: st.DrawFn) -> bytes:
    """np.save of uint8 [N, 28, 28] or [N, 1, 28, 28], in C or Fortran order."""
    n = draw(st.integers(1, MAX_IMAGES))
    shape = draw(st.sampled_from([(n, IMAGE_SIDE, IMAGE_SIDE), (n, 1, IMAGE_SIDE, IMAGE_SIDE)]))
    pixels = pixels_from(draw(st.binary(max_size=32)), shape)
    return npy_file(np.asfortranarray(pixels) if draw(st.booleans()) else pixels)


for _media_type, _fmt in PIL_FORMATS.items():
    schemathesis.openapi.media_type(_media_type, image_files(_fmt))
schemathesis.openapi.media_type(NPY, npy_files())


# --- rule 2: application/octet-stream, per operation --------------------------------------------


def npy_from(seed: bytes) -> bytes:
    return npy_file(pixels_from(seed, (1 + len(seed) % MAX_IMAGES, IMAGE_SIDE, IMAGE_SIDE)))


def binary_infer_request(seed: bytes) -> bytes:
    """The binary tensor data extension's body: UINT8 or FP32 [N, 28, 28], the answer asked
    for as JSON or as bytes."""
    n = 1 + len(seed) % MAX_IMAGES
    pixels = pixels_from(seed, (n, IMAGE_SIDE, IMAGE_SIDE))
    fp32 = seed[0] % 2 == 1
    tensor = pixels.astype("<f4").tobytes() if fp32 else pixels.tobytes()
    doc: dict[str, Any] = {
        "inputs": [
            {
                "name": INPUT_NAME,
                "datatype": "FP32" if fp32 else "UINT8",
                "shape": [n, IMAGE_SIDE, IMAGE_SIDE],
                "parameters": {"binary_data_size": len(tensor)},
            }
        ]
    }
    if seed[-1] % 2:
        doc["outputs"] = [{"name": PROBABILITIES_NAME, "parameters": {"binary_data": True}}]
    return json.dumps(doc).encode() + tensor


# Per operation: the document's minLength, how a made body starts, and how it is made.
OCTET_BODIES: dict[str, tuple[int, bytes, Callable[[bytes], bytes]]] = {
    "/classify_npy": (NPY_MIN_BYTES, NPY_MAGIC, npy_from),
    "/v2/models/{name}/infer": (V2_BINARY_MIN_BYTES, b"{", binary_infer_request),
    "/v2/models/{name}/versions/{version}/infer": (V2_BINARY_MIN_BYTES, b"{", binary_infer_request),
}


def made_octets(path: str, body: Any) -> Any:
    """``body`` made into the operation's format when it is a ``format: binary`` draw (a
    Binary: the media type strategies above return bytes) as long as the document's
    minLength; anything else as it is."""
    rule = OCTET_BODIES.get(path)
    if rule is None or not isinstance(body, Binary):
        return body
    min_bytes, prefix, make = rule
    if len(body.data) < min_bytes or body.data.startswith(prefix):
        return body
    return Binary(make(body.data))


@schemathesis.hook
def before_generate_body(ctx: Any, strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The fuzzing and stateful phases: the body is made as it is drawn (a positive case stays
    positive, so positive_data_acceptance checks it)."""
    if ctx.operation is None or ctx.operation.path not in OCTET_BODIES:
        return strategy
    path = ctx.operation.path
    return strategy.map(lambda body: made_octets(path, body))


# --- rules 3 and 4: relations between values ----------------------------------------------------


def json_part_length(body: Any) -> int | None:
    """The length of a binary request's JSON part (None when the body does not start with one)."""
    data = body.data if isinstance(body, Binary) else body
    if not isinstance(data, bytes) or not data.startswith(b"{"):
        return None
    try:
        return json.JSONDecoder().raw_decode(data.decode("latin-1"))[1]
    except ValueError:
        return None


def made_octets_of_coverage(case: Any) -> None:
    """The coverage phase builds its cases without ``before_generate_body``: its positive
    octet-stream body (minLength zero bytes) is made here. schemathesis cannot validate a
    binary body a hook changed, so it counts this one as negative, and an octet-stream body
    so counted and accepted is no failure of negative_data_rejection: the case is checked for
    server errors and conformance, while the fuzzing and stateful phases check acceptance."""
    if case.media_type == OCTETS:
        made = made_octets(case.operation.path, case.body)
        if made is not case.body:
            case.body = made


def complete_infer_request(case: Any) -> None:
    """/v2/.../infer (rule 3)."""
    made_octets_of_coverage(case)
    meta = case.meta
    header_drawn_valid = not meta.is_negative_at(ParameterLocation.HEADER)
    if case.media_type == OCTETS:
        length = json_part_length(case.body)
        if length is not None and header_drawn_valid:
            case.headers[V2_HEADER_LENGTH] = str(length)
        return
    if header_drawn_valid:
        case.headers.pop(V2_HEADER_LENGTH, None)
    if meta.is_negative_at(ParameterLocation.BODY) or not isinstance(case.body, dict):
        return
    for tensor in case.body["inputs"]:
        tensor["shape"] = [int(size) for size in tensor["shape"]]
        count = math.prod(tensor["shape"])
        values = tensor["data"] or [0]
        tensor["data"] = (values * -(-count // len(values)))[:count]


def read_query_under_form(case: Any) -> None:
    """/classify, /classify_npy, a negative case (rule 4)."""
    if not (case.meta.generation.mode.is_negative and isinstance(case.body, dict) and case.query):
        return
    for name in FORM_OPTIONS:
        if name not in case.body or name not in case.query:
            continue
        value = case.query[name]
        if not isinstance(value, str) or (name == "invert" and not BOOL_TEXT.search(value)):
            del case.body[name]


def npy_case(case: Any) -> None:
    made_octets_of_coverage(case)
    read_query_under_form(case)


CASE_RULES: dict[str, Callable[[Any], None]] = {
    "/classify": read_query_under_form,
    "/classify_npy": npy_case,
    "/v2/models/{name}/infer": complete_infer_request,
    "/v2/models/{name}/versions/{version}/infer": complete_infer_request,
}


@schemathesis.hook
def map_case(ctx: Any, case: Any) -> Any:
    rule = CASE_RULES.get(case.operation.path)
    if rule is not None and case.meta is not None and case.method.upper() == "POST":
        rule(case)
    return case
