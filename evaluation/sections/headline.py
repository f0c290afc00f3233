"""Headline: one row per model, the numbers a reader looks at first."""

from __future__ import annotations

from evaluation.document import Section, Table
from evaluation.metrics import BOOTSTRAP_RESAMPLES, ECE_BINS
from evaluation.run import Evaluation
from evaluation.sections.formatting import pct, pp, with_ci


def section(ev: Evaluation) -> Section:
    rows = []
    for name, r in ev.models.items():
        m, recorded = r.metrics, r.info.test_accuracy if r.info else None
        rows.append(
            [
                name,
                with_ci(m.accuracy),
                pct(m.top2_accuracy),
                f"{m.nll:.4f}",
                pct(m.ece),
                pct(recorded),
                "n/a" if recorded is None else pp(m.accuracy.estimate - recorded),
                f"{r.info.parameters:,}" if r.info and r.info.parameters else "n/a",
            ]
        )
    table = Table(
        [
            "model",
            "accuracy [95% CI]",
            "top-2",
            "NLL",
            f"ECE ({ECE_BINS} bins)",
            "recorded test acc. (/models)",
            "measured − recorded",
            "parameters",
        ],
        rows,
        "Accuracy of what the service answered, with a bootstrap 95% interval "
        f"({BOOTSTRAP_RESAMPLES:,} resamples). NLL: mean −log p(true class). ECE: expected "
        "calibration error. On the full official test set, measured − recorded should be 0: "
        "the recorded number is the exporter's own test accuracy.",
    )
    text = [
        f"{ev.dataset.images:,} test images from {ev.dataset.folder} were sent to "
        f"{ev.url} as .npy batches; every number below is computed from the service's answers."
    ]
    return Section("Headline", [*text, table])
