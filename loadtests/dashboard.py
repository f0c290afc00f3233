"""Render deploy/monitoring/dashboard.json's panels from a real run (docs/images/dashboard.png).

    python -m loadtests.dashboard --onnx-dir artifacts/onnx      # (make dashboard-png)

Grafana is not in Debian, so this draws the dashboard's own queries with matplotlib from
Prometheus' HTTP API: it starts the service on the exported models (each carrying its
test-set reference), a real Prometheus (scrape and rule evaluation every second, the
shipped rules.yaml unchanged) and sends the real Fashion-MNIST test set for ``--duration``
seconds: ``baseline`` and ``improved`` get the test set in order (its class mix) all along;
``deeper`` gets it for the first half and then footwear only (Sandal, Sneaker, Ankle boot),
a skewed mix; plus single PNG images, JSON batches and bad requests. Each panel's
expressions are substituted as Grafana does (``$__rate_interval`` from the step and the
scrape interval, ``$__range`` = the run, ``$model`` = All) and drawn: time series from
``query_range``, bar gauges from an instant query at the end.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fmnist.dataset import CLASS_NAMES, DatasetError, load_test_set
from loadtests.monitoring import (
    RULES_FILE,
    Prometheus,
    PrometheusError,
    dashboard_queries,
    grafana_rate_interval,
    legend,
    load_dashboard,
    prometheus_server,
)
from loadtests.payloads import encode_png, npy_bytes

log = logging.getLogger(__name__)
SKEWED_MODEL = "deeper"
FOOTWEAR = ("Sandal", "Sneaker", "Ankle boot")


def send_load(
    url: str, models: Sequence[str], images: np.ndarray, labels: np.ndarray, seconds: float
) -> dict[str, int]:
    """The run's traffic (see the module docstring); images sent per model."""
    import httpx

    stop = threading.Event()
    switch_at = time.monotonic() + seconds / 2
    footwear = np.flatnonzero(np.isin(labels, [CLASS_NAMES.index(c) for c in FOOTWEAR]))
    sent: dict[str, int] = {}

    def batches(model: str) -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            start = 0
            while not stop.is_set():
                if model == SKEWED_MODEL and time.monotonic() > switch_at:
                    index = footwear[np.arange(start, start + 32) % len(footwear)]
                else:
                    index = np.arange(start, start + 32) % len(images)
                start += 32
                files = {"array": ("a.npy", npy_bytes(images[index]), "application/octet-stream")}
                client.post("/classify_npy", files=files, data={"model": model})
                sent[model] = sent.get(model, 0) + len(index)
                time.sleep(0.05)

    def singles() -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            i = 0
            while not stop.is_set():
                image = images[i % len(images)]
                i += 1
                client.post(
                    "/classify",
                    files={"image": ("x.png", encode_png(image), "image/png")},
                    data={"model": models[i % len(models)]},
                )
                client.post("/classify_batch", json={"pixels": [image.tolist()] * 4})
                if i % 5 == 0:
                    client.post(
                        "/classify_batch",
                        content=b"{oops",
                        headers={"content-type": "application/json"},
                    )
                    client.post("/classify_batch", json={"pixels": [], "model": models[0]})
                time.sleep(0.05)

    threads = [threading.Thread(target=batches, args=(m,)) for m in models]
    threads.append(threading.Thread(target=singles))
    for t in threads:
        t.start()
    stop.wait(seconds)
    stop.set()
    for t in threads:
        t.join(timeout=120)
    return sent


def render(
    prom: Prometheus,
    dashboard: dict[str, Any],
    start: float,
    end: float,
    out: Path,
    step_s: float = 5.0,
    scrape_s: float = 1.0,
) -> list[str]:
    """Draw every panel into ``out``; the panels that had no data (should be none)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rate_interval = grafana_rate_interval(step_s, scrape_s)
    range_ = f"{int(end - start)}s"
    queries = dashboard_queries(dashboard, rate_interval, range_)
    panels = dashboard["panels"]
    cols = 3
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.4 * cols, 3.6 * rows))
    empty = []
    for ax, panel in zip(axes.ravel(), panels, strict=False):
        mine = [q for q in queries if q.panel == panel["title"]]
        ax.set_title(panel["title"], fontsize=10, loc="left")
        drawn = 0
        if panel["type"] == "bargauge":
            drawn = _bars(ax, prom, mine, end)
        else:
            for q in mine:
                for series in prom.query_range(q.expr, start, end, step_s):
                    t = np.array([float(v[0]) for v in series["values"]]) - start
                    y = np.array([float(v[1]) for v in series["values"]])
                    if np.isfinite(y).any():
                        ax.plot(t, y, lw=1.2, label=legend(q.legend, series["metric"])[:40])
                        drawn += 1
            ax.set_xlabel("seconds into the run", fontsize=8)
            for step in panel["fieldConfig"]["defaults"].get("thresholds", {}).get("steps", []):
                if step["value"] is not None:
                    ax.axhline(step["value"], color=step["color"], ls="--", lw=0.8)
            unit = panel["fieldConfig"]["defaults"].get("unit", "")
            ax.set_ylabel({"percentunit": "share", "reqps": "req/s"}.get(unit, unit), fontsize=8)
            if drawn:
                ax.legend(fontsize=6, ncol=2, loc="upper left")
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if not drawn:
            empty.append(panel["title"])
            ax.text(0.5, 0.5, "no data", ha="center", transform=ax.transAxes)
    for ax in axes.ravel()[len(panels) :]:
        ax.axis("off")
    fig.suptitle(
        f"{dashboard['title']}: deploy/monitoring/dashboard.json's queries, drawn with matplotlib "
        f"from Prometheus (\\$__rate_interval={rate_interval}, \\$__range={range_}, model=All); "
        f"deeper gets footwear only from {int((end - start) / 2)} s",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=72)
    plt.close(fig)
    return empty


def _bars(ax: Any, prom: Prometheus, queries: Sequence[Any], at: float) -> int:
    """A bar gauge of live vs reference shares: one group per class (or bound), per model."""
    values: dict[tuple[str, str], dict[str, float]] = {}
    for q in queries:
        kind = "reference" if "reference" in q.legend else "live"
        for r in prom.query(q.expr, at):
            key = r["metric"].get("class_name") or r["metric"].get("le", "")
            values.setdefault((r["metric"].get("model", ""), kind), {})[key] = float(r["value"][1])
    if not values:
        return 0
    keys = sorted({k for v in values.values() for k in v}, key=_order)
    width = 0.8 / len(values)
    for i, ((model, kind), shares) in enumerate(sorted(values.items())):
        x = np.arange(len(keys)) + i * width
        ax.bar(
            x,
            [shares.get(k, 0.0) for k in keys],
            width,
            label=f"{model} {kind}",
            hatch="//" if kind == "reference" else None,
            alpha=0.85,
        )
    ax.set_xticks(np.arange(len(keys)) + 0.4 - width / 2, keys, rotation=45, ha="right", fontsize=6)
    ax.set_ylabel("share", fontsize=8)
    ax.legend(fontsize=6, ncol=2)
    return len(values)


def _order(key: str) -> tuple[int, float, str]:
    if key in CLASS_NAMES:
        return (0, CLASS_NAMES.index(key), key)
    try:
        return (1, float(key), key)
    except ValueError:
        return (2, 0.0, key)


# The panels of shadow traffic, which have data only when a model has a candidate.
SHADOW_PANELS = ("Shadow agreement with production", "Shadow work: run, dropped, captured")


def with_candidate(onnx_dir: Path, candidate: Path, folder: Path) -> Path:
    """``onnx_dir``'s files plus ``candidate``, named its model's candidate (aliases.json)."""
    import json
    import shutil

    from fmnist.contract import file_sha256

    folder.mkdir()
    for path in onnx_dir.glob("*.onnx"):
        shutil.copy2(path, folder / path.name)
    copy = Path(shutil.copy2(candidate, folder / f"candidate-{candidate.name}"))
    version = file_sha256(copy)[:12]
    name = candidate.stem  # fmnist-export writes <model name>.onnx
    production = file_sha256(onnx_dir / candidate.name)[:12]
    (folder / "aliases.json").write_text(
        json.dumps({name: {"production": production, "candidate": version}})
    )
    return folder


def run(
    onnx_dir: Path, out: Path, seconds: float, data_dir: Path | None, candidate: Path | None
) -> int:
    from loadtests.launch import bentoml_server

    test = load_test_set(data_dir)
    with tempfile.TemporaryDirectory(prefix="fmnist-dashboard-") as tmp:
        home = Path(tmp) / "bentoml"
        if candidate is not None:
            onnx_dir = with_candidate(onnx_dir, candidate, Path(tmp) / "models")
        env = {"FMNIST_MODEL_DIR": str(onnx_dir), "FMNIST_WORKERS": "2", "BENTOML_HOME": str(home)}
        home.mkdir()
        with bentoml_server(env, log_path=home / "serve.log") as url:
            import httpx

            listing = httpx.get(f"{url}/models").json()["models"]
            models = list(dict.fromkeys(m["name"] for m in listing))
            with prometheus_server(
                [url.removeprefix("http://")], [RULES_FILE], Path(tmp) / "prometheus"
            ) as prom:
                prom.wait_for('up{job="fmnist-service"} == 1')
                start = time.time()
                sent = send_load(url, models, test.images, test.labels, seconds)
                time.sleep(2)
                end = time.time()
                log.info("images sent per model: %s", sent)
                tvd = prom.query("fmnist:predicted_class_tvd:rate30m", end)
                for r in tvd:
                    print(f"drift score {r['metric']['model']}: {float(r['value'][1]):.3f}")
                empty = render(prom, load_dashboard(), start, end, out)
    print(f"wrote {out}")
    if candidate is None:  # no candidate, no shadow traffic: those panels are empty
        empty = [title for title in empty if title not in SHADOW_PANELS]
    if empty:
        print(f"error: panels without data: {', '.join(empty)}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Render the Grafana dashboard's panels from a real run (matplotlib).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--onnx-dir", type=Path, default=Path("artifacts/onnx"))
    p.add_argument("--out", type=Path, default=Path("docs/images/dashboard.png"))
    p.add_argument("--duration", type=float, default=120.0, help="seconds of load")
    p.add_argument("--data-dir", type=Path, default=None, help="Fashion-MNIST IDX files")
    p.add_argument(
        "--candidate",
        type=Path,
        default=None,
        help="another version of a model in --onnx-dir, with the same file name there "
        "(e.g. a 1-epoch baseline.onnx), shadowed as its candidate (else the shadow panels "
        "stay empty)",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    try:
        return run(args.onnx_dir, args.out, args.duration, args.data_dir, args.candidate)
    except (DatasetError, PrometheusError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
