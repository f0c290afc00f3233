"""The HTTP layer's request and answer bodies as pydantic models: the OpenAPI spec's schemas.

These models document the contract (docs/api.md) in ``/docs.json``, with examples that
"Try it out" in the Swagger UI can send as they are. The routes do not validate through
them at run time: they parse bodies themselves (service/validation.py, service/v2.py) and
build their answers as plain dicts, which keeps a request's CPU cost where it was, and a
test checks that every answer the routes build validates against its model here.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from fmnist.contract import IMAGE_SIDE, INPUT_NAME, PROBABILITIES_NAME
from fmnist.dataset import CLASS_NAMES

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
        json_schema_extra={"format": "binary"},
        description="PNG, JPEG, WebP or BMP of any size and mode",
    )
    model: str | SkipJsonSchema[None] = Field(None, description=MODEL_FIELD)
    invert: bool = Field(False, description="true for dark-on-light photos")


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


class NpyForm(BaseModel):
    """``POST /classify_npy`` as a multipart form."""

    array: bytes = Field(
        json_schema_extra={"format": "binary"},
        description="a .npy file (np.save) of uint8 [N, 28, 28] or [N, 1, 28, 28]",
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


class V2RequestInput(BaseModel):
    name: str = Field(description=f"{INPUT_NAME!r}")
    shape: list[int] = Field(description="[N, 1, 28, 28] or [N, 28, 28]")
    datatype: str = Field(description="FP32 or UINT8")
    parameters: dict[str, Any] | None = None
    data: list[Any] = Field(description="the values, flat in row-major order or nested")


class V2RequestOutput(BaseModel):
    name: str = Field(description=f"{PROBABILITIES_NAME!r}")
    parameters: dict[str, Any] | None = None


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
    parameters: dict[str, Any] | None = None
    inputs: list[V2RequestInput] = Field(min_length=1, max_length=1)
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
