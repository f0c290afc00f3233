"""The HTTP layer's request and answer bodies as pydantic models: the OpenAPI spec's schemas.

These models document the contract (docs/api.md) in ``/docs.json``, with examples that
"Try it out" in the Swagger UI can send as they are. The routes do not validate through
them at run time: they parse bodies themselves (service/validation.py, service/v2.py) and
build their answers as plain dicts, which keeps a request's CPU cost where it was, and a
test checks that every answer the routes build validates against its model here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from fmnist.contract import IMAGE_SIDE, INPUT_NAME, PROBABILITIES_NAME
from fmnist.dataset import CLASS_NAMES
from service.validation import FALSE_WORDS, NPY_MAGIC, TRUE_WORDS

PROBABILITIES = [0.01, 0.0, 0.01, 0.01, 0.0, 0.02, 0.01, 0.04, 0.0, 0.9]
SHA256 = "3f1c9d0e5b7a2c4e6f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6"
# One 28x28 image: a bright horizontal band on black, values 0-255.
EXAMPLE_IMAGE = [
    [200 if 10 <= row < 18 and 4 <= col < 24 else 0 for col in range(IMAGE_SIDE)]
    for row in range(IMAGE_SIDE)
]
MODEL_FIELD = (
    "a served model (GET /models): a name (its production version), name@candidate, "
    "name@production or name@<version>; default: the service's"
)
VERSION = "3f1c9d0e5b7a"
VERSION_FIELD = "the version that answered (the store's version, or the file's sha256[:12])"
Pixel = Annotated[float, Field(ge=0, le=255)]
Row = Annotated[list[Pixel], Field(min_length=IMAGE_SIDE, max_length=IMAGE_SIDE)]
Image = Annotated[list[Row], Field(min_length=IMAGE_SIDE, max_length=IMAGE_SIDE)]
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/bmp")
# A raw body on /classify_npy: the .npy file's bytes, no multipart form around them.
NPY_TYPES = ("application/x-npy", "application/octet-stream")
# No .npy file the service accepts is shorter: the magic string, the format version and the
# header's length (4 bytes), then at least one image's 784 bytes (and the header's text).
NPY_MIN_BYTES = len(NPY_MAGIC) + 4 + IMAGE_SIDE * IMAGE_SIDE
# The whitespace str.strip() removes, i.e. every character str.isspace() accepts: parse_bool
# strips it, so the pattern below allows it. (JSON Schema's \s is ECMA-262's, another set.)
STRIP_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680"
    + "".join(map(chr, range(0x2000, 0x200B)))
    + "\u2028\u2029\u202f\u205f\u3000"
)


def _either_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c}]" if c.isalpha() else c for c in word)


def _char_class(chars: str) -> str:
    """``[...]`` of ``chars`` with \\uXXXX escapes, runs of code points as ranges."""
    points = sorted(map(ord, chars))
    runs: list[list[int]] = []
    for point in points:
        if runs and point == runs[-1][1] + 1:
            runs[-1][1] = point
        else:
            runs.append([point, point])
    spans = [f"\\u{a:04x}" + (f"-\\u{b:04x}" if b > a else "") for a, b in runs]
    return "[" + "".join(spans) + "]"


# Any run of that whitespace: a value of only whitespace is blank (parse_bool's false, the
# default model where a model is named).
SPACES = _char_class(STRIP_WHITESPACE) + "*"
_WORDS = "|".join(_either_case(word) for word in (*TRUE_WORDS, *FALSE_WORDS))
# What parse_bool accepts (a query parameter or a form field): a word in any case, or nothing
# (false), with whitespace around it. Written with \\uXXXX escapes and character classes only,
# so ECMA-262, Python and Rust regular expressions read it alike.
BOOL_PATTERN = f"^{SPACES}(?:{_WORDS})?{SPACES}$"
BOOL_TEXT: dict[str, Any] = {
    "type": "string",
    "pattern": BOOL_PATTERN,
    "examples": ["true", "false"],
}


def _examples(*examples: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": list(examples)})


class ErrorBody(BaseModel):
    """Every error of the project's API: a short code and a sentence for a person."""

    model_config = _examples(
        {
            "error": "unknown_model",
            "detail": "model 'resnet' is not served (expected one of baseline, deeper)",
        }
    )
    error: str = Field(description="snake_case reason: corrupt_image, unknown_model, ...")
    detail: str = Field(description="what was wrong and what is expected")


class ClassifyForm(BaseModel):
    """``POST /classify`` as a multipart form."""

    image: bytes = Field(
        min_length=1,
        json_schema_extra={"format": "binary"},
        description="PNG, JPEG, WebP or BMP of any size and mode",
    )
    model: str | SkipJsonSchema[None] = Field(None, description=MODEL_FIELD)
    invert: str = Field(
        "false",
        json_schema_extra=BOOL_TEXT,
        description="true for dark-on-light photos: 1, true, yes, on or 0, false, no, off "
        "(any case); empty means false",
    )


class ClassifyAnswer(BaseModel):
    """One image's prediction."""

    model_config = _examples(
        {
            "model": "baseline",
            "version": VERSION,
            "class_index": 9,
            "class_name": "Ankle boot",
            "confidence": 0.9,
            "probabilities": dict(zip(CLASS_NAMES, PROBABILITIES, strict=True)),
        }
    )
    model: str
    version: str = Field(description=VERSION_FIELD)
    class_index: int = Field(ge=0, le=9)
    class_name: str
    confidence: float = Field(ge=0, le=1)
    probabilities: dict[str, float] = Field(description="class name → probability")


class BatchRequest(BaseModel):
    """``POST /classify_batch``: images as nested lists of pixel values."""

    model_config = _examples({"pixels": [EXAMPLE_IMAGE], "model": "baseline"})
    pixels: list[Image] = Field(
        min_length=1,
        description="[N][28][28] numbers 0-255 (light garment on black, like Fashion-MNIST)",
    )
    model: str | None = Field(None, description=MODEL_FIELD)


NPY_FILE = (
    "a .npy file (np.save): the magic string \\x93NUMPY, a header, then uint8 [N, 28, 28] or "
    "[N, 1, 28, 28], 1 <= N <= the service's max_batch_size, exactly as long as the header says"
)


class NpyForm(BaseModel):
    """``POST /classify_npy`` as a multipart form."""

    array: bytes = Field(
        min_length=NPY_MIN_BYTES,
        json_schema_extra={"format": "binary"},
        description=NPY_FILE,
    )
    model: str | SkipJsonSchema[None] = Field(None, description=MODEL_FIELD)


class BatchAnswer(BaseModel):
    """A batch's predictions, in the order of the images."""

    model_config = _examples(
        {
            "model": "baseline",
            "version": VERSION,
            "count": 1,
            "class_names": list(CLASS_NAMES),
            "class_index": [9],
            "confidence": [0.9],
            "probabilities": [PROBABILITIES],
        }
    )
    model: str
    version: str = Field(description=VERSION_FIELD)
    count: int = Field(ge=1)
    class_names: list[str]
    class_index: list[int]
    confidence: list[float]
    probabilities: list[list[float]] = Field(description="[N][10], in class_names order")


class InputSpec(BaseModel):
    name: str
    dtype: str
    shape: list[int | str]
    range: list[float]
    description: str


class ModelInfo(BaseModel):
    """One served version of a model, as its ONNX file describes it."""

    name: str
    version: str = Field(description=VERSION_FIELD)
    aliases: list[str] = Field(description="the aliases that point to this version now")
    parameters: int | None
    test_accuracy: float | None
    val_accuracy: float | None
    sha256: str
    opset: int | None
    input: InputSpec
    metadata: dict[str, Any] = Field(description="the ONNX file's metadata_props, decoded")
    providers: list[str] = Field(description="onnxruntime execution providers in use")


class ModelListing(BaseModel):
    """``GET /models``: exactly the served versions, production's first."""

    model_config = _examples(
        {
            "default": "baseline",
            "aliases": {"baseline": {"production": VERSION}},
            "models": [
                {
                    "name": "baseline",
                    "version": VERSION,
                    "aliases": ["production"],
                    "parameters": 421642,
                    "test_accuracy": 0.9187,
                    "val_accuracy": 0.9215,
                    "sha256": SHA256,
                    "opset": 18,
                    "input": {
                        "name": INPUT_NAME,
                        "dtype": "float32",
                        "shape": ["N", 1, IMAGE_SIDE, IMAGE_SIDE],
                        "range": [0, 255],
                        "description": "raw pixels 0-255",
                    },
                    "metadata": {"model_name": "baseline"},
                    "providers": ["CPUExecutionProvider"],
                }
            ],
        }
    )
    default: str
    aliases: dict[str, dict[str, str]] = Field(
        description="model name → alias (production, candidate, previous) → version"
    )
    models: list[ModelInfo]


# --- Open Inference Protocol (KServe v2) ------------------------------------------------


class V2Error(BaseModel):
    """The protocol's error body."""

    model_config = _examples({"error": "model 'resnet' is not served (expected baseline, deeper)"})
    error: str


class V2ServerLive(BaseModel):
    live: bool


class V2ServerReady(BaseModel):
    ready: bool


class V2ServerMetadata(BaseModel):
    model_config = _examples({"name": "fmnist", "version": "0.1.0", "extensions": []})
    name: str
    version: str
    extensions: list[str]


class V2TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 for the dynamic batch dimension")


class V2ModelMetadata(BaseModel):
    model_config = _examples(
        {
            "name": "baseline",
            "versions": [SHA256[:12]],
            "platform": "onnx",
            "inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, 1, 28, 28]}],
            "outputs": [{"name": PROBABILITIES_NAME, "datatype": "FP32", "shape": [-1, 10]}],
        }
    )
    name: str
    versions: list[str]
    platform: str
    inputs: list[V2TensorMetadata]
    outputs: list[V2TensorMetadata]


class V2ModelReady(BaseModel):
    name: str
    ready: bool


def _shapes(schema: dict[str, Any]) -> None:
    """[N, 1, 28, 28] or [N, 28, 28]; bound_batches sets N's maximum (a setting)."""
    side = {"const": IMAGE_SIDE}
    variants = [
        [{"type": "integer", "minimum": 1}, {"const": 1}, side, side],
        [{"type": "integer", "minimum": 1}, side, side],
    ]
    schema["oneOf"] = [{"prefixItems": v, "minItems": len(v), "maxItems": len(v)} for v in variants]


class V2InputParameters(BaseModel):
    model_config = ConfigDict(extra="allow")
    binary_data_size: None = Field(
        None,
        description="the tensor's byte count, only in the JSON part of a request with the binary "
        "tensor data extension (application/octet-stream); a JSON request carries data",
    )


class V2RequestInput(BaseModel):
    """What the two datatypes' inputs share (V2InputFP32, V2InputUINT8)."""

    model_config = ConfigDict(
        json_schema_extra={
            "description": "The model's one input. `data` holds as many values as `shape` "
            "multiplies to, flat in row-major order (a count JSON Schema cannot state). The "
            "service also reads the protocol's nested form of `data`; this describes the flat one."
        }
    )
    name: str = Field(json_schema_extra={"const": INPUT_NAME}, description=f"{INPUT_NAME!r}")
    shape: list[int] = Field(
        json_schema_extra=_shapes,
        description="[N, 1, 28, 28] or [N, 28, 28], 1 <= N <= the service's max_batch_size",
    )
    parameters: V2InputParameters | None = None


class V2InputFP32(V2RequestInput):
    datatype: Literal["FP32"]
    data: list[Pixel] = Field(description="prod(shape) numbers 0-255, row-major")


class V2InputUINT8(V2RequestInput):
    datatype: Literal["UINT8"]
    data: list[Annotated[int, Field(ge=0, le=255)]] = Field(
        description="prod(shape) integers 0-255, row-major"
    )


class V2RequestOutput(BaseModel):
    name: str = Field(
        json_schema_extra={"const": PROBABILITIES_NAME}, description=f"{PROBABILITIES_NAME!r}"
    )
    parameters: dict[str, Any] | None = Field(
        None, description='{"binary_data": true} for the answer as bytes after its JSON'
    )


class V2InferRequest(BaseModel):
    model_config = _examples(
        {
            "id": "42",
            "inputs": [
                {
                    "name": INPUT_NAME,
                    "shape": [1, 1, IMAGE_SIDE, IMAGE_SIDE],
                    "datatype": "UINT8",
                    "data": [v for row in EXAMPLE_IMAGE for v in row],
                }
            ],
            "outputs": [{"name": PROBABILITIES_NAME}],
        }
    )
    id: str | None = None
    parameters: dict[str, Any] | None = Field(
        None, description='{"binary_data_output": true} for every output as bytes'
    )
    inputs: list[Annotated[V2InputFP32 | V2InputUINT8, Field(discriminator="datatype")]] = Field(
        min_length=1, max_length=1
    )
    outputs: list[V2RequestOutput] | None = None


class V2ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[float] = Field(description="flat, row-major")


class V2InferResponse(BaseModel):
    model_config = _examples(
        {
            "model_name": "baseline",
            "model_version": SHA256[:12],
            "id": "42",
            "outputs": [
                {
                    "name": PROBABILITIES_NAME,
                    "shape": [1, 10],
                    "datatype": "FP32",
                    "data": PROBABILITIES,
                }
            ],
        }
    )
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[V2ResponseOutput]


# The request bodies the routes parse themselves: put into the spec's components by name.
REQUEST_MODELS: tuple[type[BaseModel], ...] = (ClassifyForm, BatchRequest, NpyForm, V2InferRequest)


def bound_batches(schemas: dict[str, Any], max_batch: int) -> None:
    """The service's max_batch_size (a setting) as the largest N the request schemas allow."""
    schemas["BatchRequest"]["properties"]["pixels"]["maxItems"] = max_batch
    for name in ("V2InputFP32", "V2InputUINT8"):
        for shape in schemas[name]["properties"]["shape"]["oneOf"]:
            shape["prefixItems"][0]["maximum"] = max_batch
