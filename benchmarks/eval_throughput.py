"""How fast fmnist-eval's client pushes the test set through the service.

    .venv/bin/python benchmarks/eval_throughput.py --onnx-dir /tmp/q1/onnx
    .venv/bin/python benchmarks/eval_throughput.py --url http://127.0.0.1:3000 --repeats 3

Starts ``bentoml serve`` on the given ONNX files (or uses ``--url``), then times
:meth:`evaluation.client.ServiceClient.predict` on the 10,000 test images for each model
and each (batch size, concurrency) pair, best of ``--repeats``. Prints a Markdown table of
seconds per full test set. The goal is at most 3 s per model on the 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from fmnist.markdown import markdown_table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from evaluation.client import ServiceClient  # noqa: E402
from fmnist.dataset import load_test_set  # noqa: E402
from fmnist.registry import study_models  # noqa: E402


@contextlib.contextmanager
def service(url: str | None, onnx_dir: Path, workers: int | None) -> Iterator[str]:
    if url:
        yield url
        return
    from loadtests.launch import bentoml_server  # needs bentoml; not with --url

    with tempfile.TemporaryDirectory() as home:
        env = {"FMNIST_MODEL_DIR": str(onnx_dir.resolve()), "BENTOML_HOME": home}
        if workers:
            env["FMNIST_WORKERS"] = str(workers)
        with bentoml_server(env, log_path=Path(home) / "serve.log") as started:
            yield started


async def best_time(
    url: str, images: np.ndarray, model: str, batch: int, conc: int, repeats: int
) -> float:
    async with ServiceClient(url, concurrency=conc) as client:
        await client.predict(images[:batch], model, batch, progress=False)  # warm connections
        times = []
        for _ in range(repeats):
            served = await client.predict(images, model, batch, progress=False)
            times.append(served.seconds)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default=None, help="a running service (default: start one)")
    p.add_argument("--onnx-dir", type=Path, default=Path("artifacts/onnx"))
    p.add_argument("--models", nargs="+", default=list(study_models()))
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[250, 500, 1000])
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--workers", type=int, default=None, help="FMNIST_WORKERS of the server")
    p.add_argument("--data-dir", type=Path, default=None)
    args = p.parse_args(argv)
    images = load_test_set(args.data_dir).images
    rows: list[list[object]] = []
    with service(args.url, args.onnx_dir, args.workers) as url:
        for model in args.models:
            for batch in args.batch_sizes:
                for conc in args.concurrency:
                    s = asyncio.run(best_time(url, images, model, batch, conc, args.repeats))
                    ips = len(images) / s
                    rows.append([model, batch, conc, f"{s:.2f}", f"{ips:,.0f}"])
                    print(*rows[-1], sep="\t", file=sys.stderr, flush=True)  # progress
    print(f"{len(images):,} test images, {os.cpu_count()} CPUs, load: {os.getloadavg()[0]:.1f}\n")
    print(markdown_table(["model", "batch", "concurrency", "seconds", "images/s"], rows, "lrrrr"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
