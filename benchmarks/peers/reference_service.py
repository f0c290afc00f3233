"""The default BentoML reference: what a BentoML user writes first, served with defaults.

    cd benchmarks/peers && REF_MODEL=/path/baseline.onnx bentoml serve reference_service:Reference

One worker (BentoML's default), ``POST /img`` with a raw PNG body (``Content-Type:
image/png``: a positional-only ``PIL.Image`` parameter takes the whole body), onnxruntime on
the same ONNX file with 1 intra-op / 1 inter-op thread like the project's service
(override with PEER_ORT_THREADS). Nothing else tuned.
"""

from __future__ import annotations

import os

import bentoml
import numpy as np
import onnxruntime as ort
from PIL.Image import Image


@bentoml.service
class Reference:
    def __init__(self) -> None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(os.environ.get("PEER_ORT_THREADS", "1"))
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            os.environ["REF_MODEL"], opts, providers=["CPUExecutionProvider"]
        )

    @bentoml.api
    def img(self, image: Image, /) -> dict:
        x = np.asarray(image.convert("L"), dtype=np.float32).reshape(1, 1, 28, 28)
        probs = self.session.run(["probabilities"], {"pixels": x})[0][0]
        return {"class_index": int(probs.argmax()), "probabilities": probs.tolist()}
