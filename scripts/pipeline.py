"""The main job, end to end: train → export → figures → model store → serve → evaluate.

    make all                                   # set-up first, then this
    .venv/bin/python scripts/pipeline.py --epochs 1 --limit-batches 20   # a quick pass

Each step is the project's own CLI, run as a subprocess, so this file only orders them.
Training resumes an interrupted run and reuses a finished one, so running it again costs
little. The service runs from the BentoML model store (the same route as a built Bento)
on a free loopback port, and is stopped when evaluation ends or fails.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from fmnist.contract import ARTIFACTS_DIR, RESULTS_DIR, onnx_dir
from fmnist.registry import model_names
from loadtests.launch import bentoml_server  # starts the service as a process

ROOT = Path(__file__).resolve().parent.parent


def step(title: str, args: list[str]) -> None:
    print(f"\n=== {title}: {' '.join(args)}", flush=True)
    start = time.perf_counter()
    code = subprocess.call([sys.executable, "-m", *args], cwd=ROOT)
    if code != 0:
        raise SystemExit(f"pipeline: step '{title}' failed (exit {code})")
    print(f"=== {title}: done in {time.perf_counter() - start:.0f}s", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--artifacts", type=Path, default=ARTIFACTS_DIR)
    p.add_argument("--results", type=Path, default=RESULTS_DIR)
    p.add_argument(
        "--models",
        nargs="+",
        default=list(model_names()),
        choices=model_names(),
        help="registered models (fmnist.registry) to train, export, serve and evaluate",
    )
    p.add_argument("--epochs", type=int, default=None, help="override every recipe's epochs")
    p.add_argument("--limit-batches", type=int, default=None)
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument(
        "--skip-checksums",
        action="store_true",
        help="accept a dataset whose md5 differs from the official one (tests)",
    )
    args = p.parse_args(argv)

    data = ["--data-dir", str(args.data_dir)] if args.data_dir else []
    if args.skip_checksums:
        data += ["--skip-checksums"]
    quick = ["--limit-batches", str(args.limit_batches)] if args.limit_batches else []
    if args.epochs:
        quick += ["--epochs", str(args.epochs)]
    models = ["--models", *args.models]
    step("train", ["training.train", "--out", str(args.artifacts), *models, *quick, *data])
    step("export", ["training.export", "--out", str(args.artifacts), *models, *data])
    step(
        "figures",
        ["training.report", "--artifacts", str(args.artifacts), "--out", str(args.results), *data],
    )
    step("import models", ["service.import_models", "--onnx-dir", str(onnx_dir(args.artifacts))])

    report = args.results / "evaluation"
    print("\n=== serve: bentoml serve service.service:FashionMNISTService (model store)")
    log_path = args.artifacts / "service.log"
    try:
        with bentoml_server({}, log_path=log_path, ready_timeout_s=180) as url:
            print(f"=== serve: ready at {url} (log: {log_path})", flush=True)
            step(
                "evaluate",
                [
                    "evaluation.cli",
                    "--url",
                    url,
                    "--out",
                    str(report),
                    "--onnx-dir",
                    str(onnx_dir(args.artifacts)),
                    *data,
                ],
            )
    except (RuntimeError, TimeoutError) as exc:
        raise SystemExit(f"pipeline: the service did not start: {exc} (see {log_path})") from None
    print(
        f"\nDone. Training figures and summary: {args.results}/summary.md\n"
        f"Evaluation report: {report}/report.html (and report.md)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
