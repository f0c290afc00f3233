"""Static checks of the Dockerfile and .dockerignore (the image itself is built and probed
by scripts/container_smoke.sh, which needs a container engine)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_dockerfile_has_the_required_shape() -> None:
    assert DOCKERFILE.startswith("#") and "\nARG BASE_IMAGE=python:3.11-slim\n" in DOCKERFILE
    assert "\nEXPOSE 3000\n" in DOCKERFILE
    assert re.search(r"HEALTHCHECK .*\n?.*/readyz", DOCKERFILE)
    assert "PYTHONUNBUFFERED=1" in DOCKERFILE and "FMNIST_MODEL_DIR=/app/models" in DOCKERFILE
    user = re.findall(r"^USER (\S+)$", DOCKERFILE, re.MULTILINE)
    assert user and user[-1] not in ("root", "0")
    # Dependencies are installed before the code is copied (a cached layer).
    assert DOCKERFILE.index("pip install") < DOCKERFILE.index("COPY service/")


def test_the_image_installs_only_serving_dependencies() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    serving = project["dependencies"] + project["optional-dependencies"]["service"]
    names = {re.split(r"[<>=!~\[ ]", r, maxsplit=1)[0].lower() for r in serving}
    assert not names & {"torch", "torchvision", "onnx", "onnxscript"}
    assert "['optional-dependencies']['service']" in DOCKERFILE


def test_dockerignore_keeps_data_reports_and_venvs_out() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"  # an allow-list: anything not named below stays out
    allowed = {line[1:] for line in lines if line.startswith("!")}
    assert allowed >= {"pyproject.toml", "fmnist/", "service/"}
    assert all(a.endswith(".onnx") for a in allowed if a.startswith(("artifacts", "build")))
    assert not any(a.startswith((".venv", "data", "reports", "runs")) for a in allowed)


def test_kubernetes_runs_the_image_as_its_own_user() -> None:
    uid = re.search(r"useradd .*--uid (\d+)", DOCKERFILE)
    deployment = (ROOT / "deploy" / "k8s" / "deployment.yaml").read_text()
    assert uid and f"runAsUser: {uid.group(1)}" in deployment
