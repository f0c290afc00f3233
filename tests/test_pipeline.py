"""The main job end to end (train → export → figures → store → serve → evaluate), shrunk."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_pipeline_runs_end_to_end_on_synthetic_data(
    synthetic_data_dir: Path, tmp_path: Path
) -> None:
    artifacts, results = tmp_path / "artifacts", tmp_path / "results"
    done = subprocess.run(
        [
            sys.executable,
            "scripts/pipeline.py",
            "--models",
            "baseline",
            "deeper",
            "--epochs",
            "1",
            "--limit-batches",
            "3",
            "--data-dir",
            str(synthetic_data_dir),
            "--skip-checksums",
            "--artifacts",
            str(artifacts),
            "--results",
            str(results),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={
            **os.environ,
            "BENTOML_HOME": str(tmp_path / "bentoml"),
            "BENTOML_DO_NOT_TRACK": "true",
        },
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Evaluation report:" in done.stdout
    for name in ("baseline", "deeper"):
        assert (artifacts / "onnx" / f"{name}.onnx").exists()
        assert (results / f"curves_{name}.png").exists()
    metrics = json.loads((results / "evaluation" / "metrics.json").read_text())
    assert set(metrics["models"]) == {"baseline", "deeper"}
    summary = json.loads((results / "summary.json").read_text())
    for name, model in metrics["models"].items():
        # What the live service answered agrees with what training measured in-process.
        measured = model["metrics"]["accuracy"]["estimate"]
        assert measured == pytest.approx(summary[name]["test_acc"], abs=1e-6)
    assert (results / "evaluation" / "report.html").stat().st_size > 10_000
    # The service was stopped: nothing listens on the port it used any more.
    port = int(re.search(r"ready at http://127\.0\.0\.1:(\d+)", done.stdout).group(1))  # type: ignore[union-attr]
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 2):
        pass
