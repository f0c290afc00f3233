"""KServe Python model server peer: onnxruntime behind the Open Inference Protocol v2.

    .venv-peers/bin/python benchmarks/peers/kserve_model.py --model_path baseline.onnx \
        --http_port 8080 --workers 2 --enable_grpc false

Runs in its own virtual environment (``make bench-peers``; requirements-kserve.txt), never
in the project's. ``POST /v2/models/fmnist/infer`` takes one FP32 tensor ``pixels``
[N,1,28,28] (raw 0-255) and answers ``probabilities`` [N,10]. The minimal model a KServe
user would write; onnxruntime gets 1 intra-op and 1 inter-op thread per worker, as the
project's service does (override with PEER_ORT_THREADS).
"""

from __future__ import annotations

import argparse
import os
import uuid

import numpy as np
import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer, model_server


class FashionMNIST(Model):
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.session: ort.InferenceSession | None = None
        self.load()

    def load(self) -> bool:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(os.environ.get("PEER_ORT_THREADS", "1"))
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(self.path, opts, providers=["CPUExecutionProvider"])
        self.ready = True
        return self.ready

    # --workers > 1 pickles the model into spawned processes: reload the session there.
    def __getstate__(self) -> dict:
        return {**self.__dict__, "session": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.load()

    def predict(self, payload: InferRequest, headers: dict | None = None) -> InferResponse:
        x = payload.inputs[0].as_numpy().astype(np.float32, copy=False).reshape(-1, 1, 28, 28)
        assert self.session is not None
        probs = self.session.run(["probabilities"], {"pixels": x})[0]
        out = InferOutput("probabilities", list(probs.shape), "FP32", probs)
        return InferResponse(str(uuid.uuid4()), self.name, [out])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model_path", required=True)
    args, _ = parser.parse_known_args()
    ModelServer().start([FashionMNIST("fmnist", args.model_path)])
