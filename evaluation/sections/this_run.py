"""This run: throughput per model and what is needed to reproduce the report."""

from __future__ import annotations

from evaluation.document import Bullets, Section, Table
from evaluation.run import Evaluation


def section(ev: Evaluation) -> Section:
    rows = [
        [
            n,
            f"{r.served.requests:,}",
            f"{r.served.seconds:.2f}",
            f"{r.served.images_per_second:,.0f}",
        ]
        for n, r in ev.models.items()
    ]
    env = [f"{k}: {v}" for k, v in ev.environment.items()]
    return Section(
        "This run",
        [
            Table(
                ["model", "requests", "seconds", "images/s"],
                rows,
                "Wall time of sending the test set and receiving every answer.",
            ),
            Bullets(
                [
                    f"created: {ev.created}",
                    f"command: {ev.command}",
                    f"dataset folder: {ev.dataset.folder}",
                    *env,
                    "files: report.html, report.md, metrics.json, predictions.csv, *.png",
                ]
            ),
        ],
    )
