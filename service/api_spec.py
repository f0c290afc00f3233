"""The OpenAPI document of the service, served at ``/docs.json`` (BentoML's Swagger UI at ``/``
reads it), and the parts of it that the routes declare.

BentoML generates its own ``/docs.json`` from a mounted FastAPI app's routes, but titles it
with its placeholder text, versions it "None" and declares OpenAPI 3.0.2 around FastAPI's
3.1 schemas. The mounted app's routes are matched before BentoML's (a mounted app's path
wins over the server's routes added after it), so the app serves this document instead:
FastAPI's spec of the routes (OpenAPI 3.1), the request bodies the routes parse themselves
(multipart forms, the raw image body, JSON), BentoML's probes, and an ``info`` that names
the package version and the served models' sha256.
"""

from __future__ import annotations

import importlib.metadata
import re
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from fmnist.contract import IMAGE_SIDE
from fmnist.markdown import markdown_table
from service.schemas import (
    BOOL_TEXT,
    IMAGE_TYPES,
    NPY_FILE,
    NPY_MIN_BYTES,
    NPY_TYPES,
    REQUEST_MODELS,
    SPACES,
    ErrorBody,
    V2Error,
    bound_batches,
)

TITLE = "Fashion-MNIST classifier"
PACKAGE = "fmnist-serving"
TAG_API = "classify"
TAG_V2 = "open inference protocol (v2)"
TAG_PROBES = "probes"
TAGS = [
    {"name": TAG_API, "description": "The project's API (docs/api.md)."},
    {
        "name": TAG_V2,
        "description": "KServe / Triton's Open Inference Protocol over REST, JSON tensors "
        "and the binary tensor data extension.",
    },
    {"name": TAG_PROBES, "description": "Served by BentoML beside the API."},
]
ERROR_DESCRIPTIONS = {
    400: "Bad input (corrupt image, wrong shape, out of range, ...)",
    404: "Unknown model",
    413: "Body, batch or image too large",
    415: "Wrong content type or image format",
    422: "Request validation failed",
    503: "Overloaded: the model's queue is full (Retry-After: 1)",
}


def package_version() -> str:
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:  # a Bento or container: source only
        from service import __version__

        return __version__


def _schema_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": ErrorBody, "description": ERROR_DESCRIPTIONS[s]} for s in statuses}


def v2_error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    answers: dict[int | str, dict[str, Any]] = {
        s: {"model": V2Error, "description": ERROR_DESCRIPTIONS[s]} for s in statuses
    }
    if 404 in answers:
        # BentoML mounts the app at "/" with a pattern that does not match a line break, so
        # a model name holding one never reaches the app: BentoML's own plain-text 404.
        answers[404]["content"] = {"text/plain": {"schema": {"type": "string"}}}
        answers[404]["description"] += " (plain text when the name holds a line break)"
    return answers


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


@dataclass(frozen=True)
class RouteDoc:
    """What a route's spec says beyond its signature: the request body it parses itself."""

    summary: str
    extra: dict[str, Any] = field(default_factory=dict)


_BINARY = {"type": "string", "format": "binary"}
_IMAGE_FILE = {**_BINARY, "minLength": 1}  # an empty file is no image (400 empty_body)
_NPY_FILE = {**_BINARY, "minLength": NPY_MIN_BYTES}
_MODEL_QUERY = _query(
    "model",
    {"type": "string"},
    "a served model (GET /models); default: the service's. With a form, the form field wins.",
)
CLASSIFY_DOC = RouteDoc(
    "Classify one image",
    {
        "parameters": [
            _MODEL_QUERY,
            _query(
                "invert",
                BOOL_TEXT,
                "true for dark-on-light photos: 1, true, yes, on or 0, false, no, off (any "
                "case); empty means false. With a form, the form field wins.",
            ),
        ],
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": _schema_ref("ClassifyForm"),
                    "encoding": {"image": {"contentType": ", ".join(IMAGE_TYPES)}},
                },
                **{kind: {"schema": _IMAGE_FILE} for kind in IMAGE_TYPES},
            },
        },
    },
)
CLASSIFY_BATCH_DOC = RouteDoc(
    "Classify a batch of images given as JSON",
    {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _schema_ref("BatchRequest")}},
        }
    },
)
CLASSIFY_NPY_DOC = RouteDoc(
    "Classify a batch of images given as a .npy file",
    {
        "parameters": [_MODEL_QUERY],
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": _schema_ref("NpyForm"),
                    "encoding": {"array": {"contentType": NPY_TYPES[0]}},
                },
                **{kind: {"schema": _NPY_FILE, "description": NPY_FILE} for kind in NPY_TYPES},
            },
        },
    },
)
V2_HEADER_LENGTH = "Inference-Header-Content-Length"
# No binary request is shorter than one UINT8 image's bytes; what they must be is the
# description's (the JSON part, then the tensor).
V2_BINARY_MIN_BYTES = IMAGE_SIDE * IMAGE_SIDE
_V2_LENGTH = {"type": "integer", "minimum": 1}
V2_INFER_EXTRA = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _schema_ref("V2InferRequest")},
            "application/octet-stream": {
                "schema": {**_BINARY, "minLength": V2_BINARY_MIN_BYTES},
                "description": "binary tensor data extension: the JSON request, its input "
                'with "parameters": {"binary_data_size": B} and no "data", then the '
                f"tensor's B bytes (little-endian); {V2_HEADER_LENGTH} gives the JSON "
                "part's length",
            },
        },
    }
}
V2_HEADER_LENGTH_PARAMETER = {
    "name": V2_HEADER_LENGTH,
    "in": "header",
    "required": False,
    "schema": _V2_LENGTH,
    "description": "the binary tensor data extension: the length of the body's JSON part, "
    "at most the body's; without it the whole body is the JSON request",
}
# 200 of an inference: JSON, or with binary_data(_output) the JSON answer, then the bytes.
V2_INFER_ANSWER = {
    "content": {
        "application/octet-stream": {
            "schema": _BINARY,
            "description": 'the JSON answer, its output with "parameters": '
            '{"binary_data_size": B} and no "data", then [N, 10] float32 little-endian',
        }
    },
    "headers": {
        V2_HEADER_LENGTH: {
            "required": False,
            "schema": _V2_LENGTH,
            "description": "with a binary answer (application/octet-stream): the length of "
            "its JSON part",
        }
    },
}
_PROBES = {
    "/livez": "200 while the server process is alive",
    "/readyz": "200 once every served model is loaded and warmed up",
    "/healthz": "BentoML's older name for /livez",
    "/metrics": "Prometheus text format: the service's fmnist_* and BentoML's metrics",
}


def _probe_paths() -> dict[str, Any]:
    return {
        path: {
            "get": {
                "tags": [TAG_PROBES],
                "summary": summary,
                "operationId": path.strip("/"),
                "responses": {
                    "200": {
                        "description": summary,
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        }
        for path, summary in _PROBES.items()
    }


def describe_models(listing: dict[str, Any]) -> str:
    rows = [
        [
            m["name"] + (" (default)" if m["name"] == listing.get("default") else ""),
            f"`{m['sha256']}`",
        ]
        for m in listing.get("models", [])
    ]
    return (
        "Classifies Fashion-MNIST images (28x28 grayscale garments, 10 classes) with the "
        "exported CNNs below (ONNX, onnxruntime). The contract is docs/api.md.\n\n"
        + markdown_table(["model", "sha256"], rows)
    )


def spec_version(listing: dict[str, Any]) -> str:
    """The package version and which files are served: ``0.1.0 (baseline 3f1c9d0e5b7a, ...)``."""
    served = ", ".join(f"{m['name']} {m['sha256'][:12]}" for m in listing.get("models", []))
    return f"{package_version()} ({served})" if served else package_version()


def model_reference(served: list[str]) -> dict[str, Any]:
    """What a request may name a model with (service.versions.Routing.resolve): a served
    name, ``name@`` an alias or a version (which may answer 404), or a blank for the default.
    A pattern rather than an enum of versions: aliases move while the document stays."""
    names = "|".join(re.escape(name) for name in served)
    return {
        "type": "string",
        "pattern": f"^(?:(?:{names})(?:@.*)?|{SPACES})$",
        "examples": served,
    }


def build_spec(app: FastAPI, listing: dict[str, Any], max_batch: int) -> dict[str, Any]:
    """The whole document: the app's routes, their request bodies, the probes, the models,
    and the batch limit (images per request) in the request schemas."""
    spec = get_openapi(
        title=TITLE,
        version=spec_version(listing),
        description=describe_models(listing),
        routes=app.routes,
        tags=TAGS,
    )
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for model in REQUEST_MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in schema.pop("$defs", {}).items():
            schemas.setdefault(name, sub)
        schemas[model.__name__] = schema
    bound_batches(schemas, max_batch)
    served = list(dict.fromkeys(m["name"] for m in listing.get("models", [])))
    for item in spec["paths"].values():
        for op in item.values():
            for param in op.get("parameters", []):
                if param["in"] == "path" and param["name"] == "name" and served:
                    param["schema"] = model_reference(served)
    spec["paths"].update(_probe_paths())
    return spec
