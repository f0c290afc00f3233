"""Fashion-MNIST model service: the ONNX CNNs (baseline, deeper, optional improved)
behind BentoML + onnxruntime.

    python -m service.import_models --onnx-dir artifacts/onnx   # into the BentoML store
    bentoml serve service.service:FashionMNISTService           # or FMNIST_MODEL_DIR=...

Importing this package is cheap and torch-free; the BentoML service class lives in
:mod:`service.service` so that the pure parts (settings, inference, validation) can be
used and tested without it.
"""

__version__ = "0.1.0"  # pyproject.toml's version (tests/test_http_api.py keeps them equal)
