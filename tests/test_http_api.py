"""The HTTP layer in-process: create_app over a stub backend, through httpx.ASGITransport.

Routes, limits, the error mapping (the contract's body for every 4xx, FastAPI's own 404,
405 and 422 included), the raw image body on /classify, the answers against their
pydantic models and the OpenAPI document. tests/test_service_server.py keeps what only a
real server shows; tests/test_v2.py covers the Open Inference Protocol.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest

from fmnist.dataset import CLASS_NAMES
from service import __version__
from service.batching import Overloaded
from service.schemas import (
    EXAMPLE_IMAGE,
    BatchAnswer,
    BatchRequest,
    ClassifyAnswer,
    ErrorBody,
    ModelListing,
)
from service.validation import decode_image, pixels_from_json
from tests.conftest import ApiClient, StubBackend
from tests.payloads import (
    GOOD_IMAGE,
    GRADIENT,
    ONE,
    bad_inputs,
    encode,
    npy,
)

REPO = Path(__file__).resolve().parent.parent
MAX_BATCH = 8
MAX_BODY = 200_000


def error_of(resp: Any) -> tuple[int, str, str]:
    body = ErrorBody.model_validate(resp.json())
    return resp.status_code, body.error, body.detail


# --- /classify: the multipart form and the raw image body ------------------------------


def test_classify_multipart(api: ApiClient, stub_backend: StubBackend) -> None:
    resp = api.post(
        "/classify",
        files={"image": ("x.png", GOOD_IMAGE, "image/png")},
        data={"model": "deeper", "invert": "true"},
    )
    assert resp.status_code == 200, resp.text
    answer = ClassifyAnswer.model_validate(resp.json())
    method, model, pixels = stub_backend.calls[-1]
    assert (method, model) == ("one", "deeper")
    np.testing.assert_array_equal(pixels, decode_image(GOOD_IMAGE, invert=True))
    assert answer.model == "deeper" and list(answer.probabilities) == list(CLASS_NAMES)
    assert answer.class_index == int(pixels.mean()) % 10
    assert answer.class_name == CLASS_NAMES[answer.class_index]
    assert answer.confidence == max(answer.probabilities.values())


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [
        ("PNG", "image/png"),
        ("JPEG", "image/jpeg"),
        ("WEBP", "image/webp"),
        ("BMP", "image/bmp"),
        ("PNG", "application/octet-stream"),
    ],
)
def test_classify_raw_image_body(
    api: ApiClient, stub_backend: StubBackend, fmt: str, content_type: str
) -> None:
    data = encode(GRADIENT, fmt)
    resp = api.post(
        "/classify?model=deeper&invert=1", content=data, headers={"content-type": content_type}
    )
    assert resp.status_code == 200, resp.text
    assert ClassifyAnswer.model_validate(resp.json()).model == "deeper"
    np.testing.assert_array_equal(stub_backend.calls[-1][2], decode_image(data, invert=True))


def test_raw_body_defaults_and_same_answer_as_the_form(api: ApiClient) -> None:
    raw = api.post("/classify", content=GOOD_IMAGE, headers={"content-type": "image/png"})
    form = api.post("/classify", files={"image": ("x.png", GOOD_IMAGE, "image/png")})
    assert raw.status_code == form.status_code == 200
    assert raw.json() == form.json() and raw.json()["model"] == "baseline"


def test_form_field_wins_over_query_parameter(api: ApiClient, stub_backend: StubBackend) -> None:
    resp = api.post(
        "/classify?model=baseline",
        files={"image": ("x.png", GOOD_IMAGE, "image/png")},
        data={"model": "deeper"},
    )
    assert resp.json()["model"] == "deeper"
    resp = api.post("/classify?model=deeper", files={"image": ("x.png", GOOD_IMAGE, "image/png")})
    assert resp.json()["model"] == "deeper"


def _form(*parts: tuple[str, bytes]) -> tuple[bytes, dict[str, str]]:
    """A multipart body from (Content-Disposition parameters, content) pairs."""
    body = b"".join(
        b"--b\r\nContent-Disposition: form-data; " + d.encode() + b"\r\n\r\n" + c + b"\r\n"
        for d, c in parts
    )
    return body + b"--b--\r\n", {"content-type": "multipart/form-data; boundary=b"}


def test_a_form_is_read_part_by_part_as_starlette_reads_it(
    api: ApiClient, stub_backend: StubBackend
) -> None:
    """The last part of a name wins; text is UTF-8, else Latin-1; a file named twice is
    one file."""
    body, headers = _form(
        ('name="model"', b"baseline"),
        ('name="image"; filename="a.png"', b"not an image"),
        ('name="image"; filename="b.png"', GOOD_IMAGE),
        ('name="model"', b"deeper"),
    )
    resp = api.post("/classify", content=body, headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()["model"] == "deeper"
    np.testing.assert_array_equal(stub_backend.calls[-1][2], decode_image(GOOD_IMAGE))
    body, headers = _form(('name="image"; filename="a.png"', GOOD_IMAGE), ('name="model"', b"\xe9"))
    resp = api.post("/classify", content=body, headers=headers)
    assert resp.status_code == 404 and "'é'" in resp.json()["detail"]  # Latin-1 é


@pytest.mark.parametrize(
    ("parts", "words"),
    [
        (
            [('name="image"; filename="x"', b"1")] * 3,
            "Too many files. Maximum number of files is 2",
        ),
        ([(f'name="f{i}"', b"1") for i in range(17)], "Maximum number of fields is 16"),
        ([('filename="x"', b"1")], 'The Content-Disposition header field "name" must be provided'),
        ([('name="image"', b"a text field")], "'image' is missing or not a file (a text field)"),
        ([('name="other"; filename="x"', b"1")], "'image' is missing or not a file (no such"),
    ],
)
def test_a_form_over_its_limits_or_without_the_file_gets_a_400(
    api: ApiClient, parts: list[tuple[str, bytes]], words: str
) -> None:
    body, headers = _form(*parts)
    resp = api.post("/classify", content=body, headers=headers)
    assert resp.status_code == 400 and words in resp.json()["detail"], resp.text
    assert resp.json()["error"] in {"invalid_form", "missing_field"}


def test_large_image_is_decoded_off_the_event_loop(api: ApiClient) -> None:
    big = encode(np.random.default_rng(1).integers(0, 256, (400, 300)))
    assert len(big) > 64 * 1024
    resp = api.post("/classify", content=big, headers={"content-type": "image/png"})
    assert resp.status_code == 200, resp.text


# --- the batch endpoints and /models ---------------------------------------------------


def test_classify_batch_and_npy(api: ApiClient, stub_backend: StubBackend) -> None:
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    by_json = api.post("/classify_batch", json={"pixels": images.tolist(), "model": "deeper"})
    by_npy = api.post(
        "/classify_npy", files={"array": ("a.npy", npy(images), "x")}, data={"model": "deeper"}
    )
    by_raw_npy = [
        api.post("/classify_npy?model=deeper", content=npy(images), headers={"content-type": kind})
        for kind in ("application/x-npy", "application/octet-stream")
    ]
    for resp in (by_json, by_npy, *by_raw_npy):
        assert resp.status_code == 200, resp.text
        answer = BatchAnswer.model_validate(resp.json())
        assert answer.model == "deeper" and answer.count == 3
        assert answer.class_names == list(CLASS_NAMES)
        assert answer.class_index == [int(m) % 10 for m in images.reshape(3, -1).mean(axis=1)]
        np.testing.assert_array_equal(stub_backend.calls[-1][2], images)
        assert stub_backend.calls[-1][:2] == ("many", "deeper")


def test_models_listing(api: ApiClient, stub_backend: StubBackend) -> None:
    resp = api.get("/models")
    assert resp.status_code == 200
    assert resp.json() == stub_backend.model_listing()
    ModelListing.model_validate(resp.json())


# --- every client mistake: the contract's body and status --------------------------------

BAD_INPUTS = bad_inputs(MAX_BATCH, MAX_BODY)


@pytest.mark.parametrize(
    ("path", "kwargs", "status", "reason", "words"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_input_gets_its_4xx(
    api: ApiClient, path: str, kwargs: dict[str, Any], status: int, reason: str, words: str
) -> None:
    before = api.backend.metrics.rejected.labels(reason)._value.get()
    resp = api.post(path, **kwargs)
    got_status, got_reason, detail = error_of(resp)
    assert (got_status, got_reason) == (status, reason), resp.text
    assert words in detail
    assert not re.search(r"<[^<>]+ at 0x[0-9a-f]+>", detail), "an object repr in the detail"
    assert api.backend.metrics.rejected.labels(reason)._value.get() == before + 1
    assert not api.backend.calls, "a bad request reached the model"


def test_frameworks_own_failures_in_the_contract_shape(api: ApiClient) -> None:
    assert error_of(api.get("/classify")) == (
        405,
        "method_not_allowed",
        "/classify does not accept GET (expected POST)",
    )
    assert api.get("/classify").headers["allow"] == "POST"
    status, reason, detail = error_of(api.get("/no/such/path"))
    assert (status, reason) == (404, "not_found") and "/no/such/path" in detail
    # 422: a validating FastAPI route (the app's own routes parse their input themselves).
    from fastapi.routing import APIRoute

    def typed(n: int) -> dict[str, int]:
        return {"n": n}

    api.app.router.routes.append(APIRoute("/typed", typed))
    status, reason, detail = error_of(api.get("/typed", params={"n": "x"}))
    assert (status, reason) == (422, "validation_error")
    assert detail.startswith("query.n: ")


def test_overloaded_is_503_with_retry_after(api: ApiClient, stub_backend: StubBackend) -> None:
    stub_backend.raises = Overloaded("baseline", 256, 1)
    resp = api.post("/classify", files={"image": ("x.png", GOOD_IMAGE, "image/png")})
    status, reason, detail = error_of(resp)
    assert (status, reason) == (503, "overloaded") and "retry after 1 s" in detail
    assert resp.headers["retry-after"] == "1"


def test_unexpected_error_is_a_json_500_without_internals(
    api: ApiClient, stub_backend: StubBackend, caplog: pytest.LogCaptureFixture
) -> None:
    stub_backend.raises = RuntimeError("secret <object at 0x7f00> state")
    resp = api.post("/classify_batch", json={"pixels": [ONE]})
    assert error_of(resp) == (500, "internal_error", "unexpected server error; see the server log")
    assert "secret" in caplog.text  # logged for the operator, not answered to the client


def test_every_request_is_counted_by_worker(api: ApiClient) -> None:
    counter = api.backend.metrics.worker_requests.labels("0")
    before = counter._value.get()
    api.get("/models")
    api.post("/classify_batch", json={"pixels": []})
    assert counter._value.get() == before + 2


# --- the OpenAPI document ----------------------------------------------------------------


def spec_of(api: ApiClient) -> dict[str, Any]:
    resp = api.get("/docs.json")
    assert resp.status_code == 200
    return dict(resp.json())


def test_spec_names_the_service_version_and_models(api: ApiClient) -> None:
    spec = spec_of(api)
    assert spec["openapi"].startswith("3.1")
    info = spec["info"]
    sha = {m["name"]: m["sha256"] for m in api.backend.model_listing()["models"]}
    assert info["title"] == "Fashion-MNIST classifier"
    assert info["version"] == (
        f"{__version__} (baseline {sha['baseline'][:12]}, deeper {sha['deeper'][:12]})"
    )
    assert all(s in info["description"] for s in sha.values())
    assert "BentoML" not in info["description"]


def test_package_version_matches_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert __version__ == project["version"]


def test_spec_describes_every_request_and_answer(api: ApiClient) -> None:
    spec = spec_of(api)
    paths = spec["paths"]
    classify = paths["/classify"]["post"]
    kinds = set(classify["requestBody"]["content"])
    assert kinds == {"multipart/form-data", "image/png", "image/jpeg", "image/webp", "image/bmp"}
    assert {p["name"] for p in classify["parameters"]} == {"model", "invert"}
    assert set(paths["/classify_batch"]["post"]["requestBody"]["content"]) == {"application/json"}
    npy_kinds = set(paths["/classify_npy"]["post"]["requestBody"]["content"])
    assert npy_kinds == {"multipart/form-data", "application/x-npy", "application/octet-stream"}
    assert {p["name"] for p in paths["/classify_npy"]["post"]["parameters"]} == {"model"}
    schemas = spec["components"]["schemas"]
    assert schemas["ClassifyForm"]["properties"]["image"]["format"] == "binary"
    assert schemas["ClassifyForm"]["required"] == ["image"]
    for path, item in paths.items():
        for method, op in item.items():
            assert op.get("operationId"), f"{method} {path} has no operationId"
            ok = op["responses"]["200"]
            assert ok.get("content"), f"{method} {path}: no answer schema"
            for status, answer in op["responses"].items():
                if status.startswith("4") or status.startswith("5"):
                    ref = answer["content"]["application/json"]["schema"]["$ref"]
                    expected = "V2Error" if path.startswith("/v2") else "ErrorBody"
                    assert ref.endswith("/" + expected), (path, status, ref)
            if method == "post":
                assert op["requestBody"]["required"] is True


def _binary_uploads(spec: dict[str, Any]) -> list[tuple[str, str, str | None, int]]:
    """(path, media type, form field or None, minLength) of every binary payload a POST takes."""
    schemas = spec["components"]["schemas"]
    found = []
    for path, item in spec["paths"].items():
        for kind, content in item.get("post", {}).get("requestBody", {}).get("content", {}).items():
            schema = content["schema"]
            if kind == "multipart/form-data":
                form = schemas[schema["$ref"].rsplit("/", 1)[-1]]
                for field, prop in form["properties"].items():
                    if prop.get("format") == "binary":
                        found.append((path, kind, field, prop.get("minLength", 0)))
            elif schema.get("format") == "binary":
                found.append((path, kind, None, schema.get("minLength", 0)))
    return found


def test_binary_uploads_state_the_shortest_payload_the_service_takes(api: ApiClient) -> None:
    """Every binary body and form part in /docs.json states a minLength, and a payload one
    byte shorter is refused. (The schemathesis run in tests/test_fuzz.py draws real files for
    these, so it never sends a too-short one as valid: this test pins the minLengths.)"""
    uploads = _binary_uploads(spec_of(api))
    assert {(path, kind) for path, kind, _, _ in uploads} >= {
        ("/classify", "multipart/form-data"),
        ("/classify", "image/png"),
        ("/classify_npy", "application/x-npy"),
        ("/v2/models/{name}/infer", "application/octet-stream"),
    }
    for path, kind, field, min_length in uploads:
        assert min_length >= 1, (path, kind, field)
        url = path.replace("{name}", "baseline").replace("{version}", "production")
        data = b"\0" * (min_length - 1)
        if field is None:
            resp = api.post(url, content=data, headers={"content-type": kind})
        else:
            resp = api.post(url, files={field: ("upload", data, "application/octet-stream")})
        assert resp.status_code == 400, (path, kind, field, resp.text)


def test_model_name_pattern_is_what_the_service_resolves(api: ApiClient) -> None:
    """/v2/models/{name}: the document's pattern admits exactly the references the service
    resolves (a name, name@alias or name@version, a blank for the default), so any other
    name is a 404."""
    param = spec_of(api)["paths"]["/v2/models/{name}"]["get"]["parameters"][0]
    pattern = re.compile(param["schema"]["pattern"])
    version = api.backend.routing.versions["deeper"][0]
    for served in ("baseline", "deeper@production", f"deeper@{version}", " ", "\u3000\t"):
        assert pattern.search(served), served
        assert api.get(f"/v2/models/{quote(served)}").status_code == 200, served
    for unknown in ("resnet", "Baseline", "baseline2", "x baseline"):
        assert not pattern.search(unknown), unknown
        assert api.get(f"/v2/models/{quote(unknown)}").status_code == 404, unknown


def test_spec_examples_are_accepted(api: ApiClient) -> None:
    """What Swagger UI's "Try it out" sends from the examples: a 200 from the API."""
    schemas = spec_of(api)["components"]["schemas"]
    example = schemas["BatchRequest"]["examples"][0]
    assert example["pixels"] == [EXAMPLE_IMAGE]
    pixels, model = pixels_from_json(json.dumps(example).encode(), 1)
    assert pixels.shape == (1, 28, 28) and model == "baseline"
    assert api.post("/classify_batch", json=example).status_code == 200
    for name, model_cls in (
        ("ClassifyAnswer", ClassifyAnswer),
        ("BatchAnswer", BatchAnswer),
        ("ModelListing", ModelListing),
        ("ErrorBody", ErrorBody),
        ("BatchRequest", BatchRequest),
    ):
        for doc in schemas[name]["examples"]:
            model_cls.model_validate(doc)


def test_no_bentoml_internals_in_the_service() -> None:
    for path in (REPO / "service").glob("*.py"):
        assert "bentoml._internal" not in path.read_text(), path


def test_docs_api_md_and_the_spec_list_the_same_operations(api: ApiClient) -> None:
    """docs/api.md names every operation of /docs.json as `METHOD /path`, and no other."""
    text = (REPO / "docs" / "api.md").read_text()
    documented = set(re.findall(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`\s]*)`", text))
    documented.discard(("GET", "/docs.json"))  # the document itself
    in_spec = {
        (method.upper(), path) for path, item in spec_of(api)["paths"].items() for method in item
    }
    assert sorted(in_spec - documented) == [], "in /docs.json, not in docs/api.md"
    assert sorted(documented - in_spec) == [], "in docs/api.md, not in /docs.json"
