"""In-process onnxruntime cost of exported models at one batch size: what a model costs the
service before any HTTP, to compare two versions of one model.

    python benchmarks/onnx_cost.py artifacts/onnx/improved.onnx /path/to/improved-v1.onnx

Each file gets its own session (the service's options: one intra-op thread per worker),
a warm-up, then ``--rounds`` rounds of ``--calls`` calls on the same random uint8 batch,
interleaved file by file so that a slow moment of the machine hits every file alike.
Prints a Markdown table (median and spread of the rounds' per-call times) and, with
``--json``, writes the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fmnist.contract import file_sha256  # noqa: E402
from fmnist.markdown import markdown_table  # noqa: E402


def session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def per_call_ms(sess: ort.InferenceSession, batch: np.ndarray, calls: int) -> float:
    name = sess.get_inputs()[0].name
    start = time.perf_counter()
    for _ in range(calls):
        sess.run(None, {name: batch})
    return (time.perf_counter() - start) / calls * 1e3


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("files", nargs="+", type=Path, help="ONNX files; the first is the reference")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--calls", type=int, default=50, help="calls per round")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (the service: 1)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    missing = [str(f) for f in args.files if not f.is_file()]
    if missing:
        print(f"error: no such ONNX file: {', '.join(missing)}", file=sys.stderr)
        return 2
    sessions = {f: session(f, args.threads) for f in args.files}
    first = sessions[args.files[0]].get_inputs()[0]
    dtype = np.uint8 if first.type == "tensor(uint8)" else np.float32
    shape = [args.batch, *(d if isinstance(d, int) else 1 for d in first.shape[1:])]
    batch = np.random.default_rng(0).integers(0, 256, shape).astype(dtype)
    times: dict[Path, list[float]] = {f: [] for f in args.files}
    for sess in sessions.values():
        per_call_ms(sess, batch, 10)  # warm-up
    for _ in range(args.rounds):
        for f, sess in sessions.items():
            times[f].append(per_call_ms(sess, batch, args.calls))
    ref = statistics.median(times[args.files[0]])
    rows, record = [], []
    for f in args.files:
        median = statistics.median(times[f])
        rows.append(
            [
                f.name,
                file_sha256(f)[:12],
                f"{median:.2f}",
                f"{min(times[f]):.2f}–{max(times[f]):.2f}",
                f"{median / ref:.2f}×",
            ]
        )
        record.append({"file": str(f), "ms_per_call": times[f], "median_ms": median})
    header = ["file", "version", f"ms per call of {args.batch} (median)", "rounds", "vs first"]
    print(markdown_table(header, rows, "llrrr"))
    if args.json:
        args.json.write_text(json.dumps({**vars(args), "files": record}, default=str, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
