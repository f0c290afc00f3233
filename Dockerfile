# The Fashion-MNIST model service: both ONNX CNNs behind BentoML + onnxruntime.
#
#   docker build -t fmnist-service .                      # models from artifacts/onnx
#   docker build --build-arg MODEL_DIR=path/in/context -t fmnist-service .
#   docker run --rm -p 3000:3000 -e FMNIST_WORKERS=2 fmnist-service
#
# Only the serving dependencies go in (pyproject's core + `service` extra: no torch,
# torchvision or CUDA wheels). scripts/container_smoke.sh builds, starts and probes it;
# docs/deployment.md has the settings and the `bentoml containerize` route beside it.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS deps
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Dependencies first, from pyproject.toml alone, so code edits do not reinstall them.
COPY pyproject.toml ./
RUN python3 -m venv /opt/venv \
 && python3 -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['service']))" > requirements.txt \
 && /opt/venv/bin/pip install -r requirements.txt \
 && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} + \
 && if /opt/venv/bin/python -c "import torch" 2>/dev/null; then echo "torch got in" >&2; exit 1; fi

FROM ${BASE_IMAGE}
ARG MODEL_DIR=artifacts/onnx
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BENTOML_HOME=/tmp/bentoml \
    XDG_CACHE_HOME=/tmp/.cache \
    BENTOML_DO_NOT_TRACK=True \
    FMNIST_MODEL_DIR=/app/models \
    FMNIST_DEFAULT_MODEL=baseline \
    FMNIST_WORKERS=2 \
    FMNIST_ORT_INTRA_THREADS=1 \
    FMNIST_ORT_INTER_THREADS=1 \
    FMNIST_ORT_PROVIDER=cpu \
    FMNIST_BATCHING_MAX_BATCH_SIZE=64 \
    FMNIST_BATCHING_MAX_WAIT_MS=0 \
    FMNIST_BATCHING_MAX_QUEUE=256
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin app
COPY --from=deps /opt/venv /opt/venv
WORKDIR /app
COPY fmnist/ fmnist/
COPY service/ service/
# The demo page's bundled examples (/ui), where the service looks for them.
COPY docs/examples/*.png docs/examples/
# Every exported model in the context: the service serves each file that carries the
# project's metadata, under the name it records (FMNIST_MODELS restricts them).
COPY ${MODEL_DIR}/*.onnx models/
USER 10001
EXPOSE 3000
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python3", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:3000/readyz', timeout=2).status != 200)"]
CMD ["bentoml", "serve", "service.service:FashionMNISTService", "--host", "0.0.0.0", "--port", "3000"]
