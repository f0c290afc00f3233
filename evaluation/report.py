"""Turn an evaluation into files: report.html (self-contained), report.md, metrics.json,
predictions.csv and the PNG figures. The statistics come from :mod:`evaluation.metrics`,
the document's text from :mod:`evaluation.sections`, its rendering from
:mod:`evaluation.document`.

The folder is written atomically: everything is built in a hidden temporary folder next to
the destination and renamed into place at the end, so an interrupted or failed run leaves
either the previous report or nothing, never a half-written one.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evaluation import plots
from evaluation.document import Document, to_html, to_markdown
from evaluation.run import Evaluation, in_study
from evaluation.sections import (
    against_the_study,
    comparison,
    gate,
    headline,
    per_model,
    serving_skew,
    summary,
    this_run,
)
from fmnist import study
from fmnist.dataset import CLASS_NAMES
from fmnist.registry import study_models

GENERATOR = "fmnist-eval"


class ReportError(RuntimeError):
    """The report cannot be written where it was asked for."""


def metrics_json(ev: Evaluation) -> dict[str, Any]:
    """Every number of the report, machine-readable (comparisons carry the Holm-adjusted p)."""
    return {
        "generator": GENERATOR,
        "created": ev.created,
        "url": ev.url,
        "command": ev.command,
        "environment": ev.environment,
        "dataset": vars(ev.dataset),
        "class_names": list(CLASS_NAMES),
        "models": {
            name: {
                "in_study": in_study(name),
                "served_model": r.info.raw if r.info else None,
                "metrics": r.metrics.to_dict(),
                "throughput": {
                    "seconds": r.served.seconds,
                    "requests": r.served.requests,
                    "images_per_second": r.served.images_per_second,
                },
                "serving_skew": r.skew.to_dict()
                if r.skew
                else {"checked": False, "why": r.skew_note},
            }
            for name, r in ev.models.items()
        },
        "comparisons": [c.to_dict() for c in ev.comparisons],
        "gate": ev.gate.to_dict() if ev.gate is not None else None,
        "study": {
            "models": list(study_models()),
            "test_accuracy": study.TEST_ACCURACY,
            "per_class_accuracy": study.PER_CLASS_ACCURACY,
            "hardest_class": study.HARDEST_CLASS,
        },
    }


def write_predictions_csv(ev: Evaluation, path: Path) -> None:
    """One row per (model, image): index, true, predicted, confidence, p(class) for each."""
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(
            [
                "index",
                "model",
                "true",
                "true_name",
                "predicted",
                "predicted_name",
                "confidence",
                *(f"p_{n}" for n in CLASS_NAMES),
            ]
        )
        for name, r in ev.models.items():
            s = r.served
            for i in range(len(s.class_index)):
                t, p = int(ev.labels[i]), int(s.class_index[i])
                out.writerow(
                    [
                        i,
                        name,
                        t,
                        CLASS_NAMES[t],
                        p,
                        CLASS_NAMES[p],
                        f"{s.confidence[i]:.6g}",
                        *(f"{v:.6g}" for v in s.probabilities[i]),
                    ]
                )


def draw_figures(ev: Evaluation, folder: Path) -> dict[str, str]:
    """All PNGs into ``folder``; returns figure key → file name."""
    names: dict[str, str] = {}
    for name, r in ev.models.items():
        pred, conf = r.served.class_index, r.served.confidence
        names[f"confusion_{name}"] = plots.confusion_heatmap(
            r.metrics.confusion, name, folder / f"confusion_{name}.png"
        ).name
        names[f"mistakes_{name}"] = plots.mistakes_gallery(
            ev.images, ev.labels, pred, conf, name, folder / f"mistakes_{name}.png"
        ).name
        names[f"pairs_{name}"] = plots.confused_pair_gallery(
            ev.images,
            ev.labels,
            pred,
            conf,
            r.metrics.confused_pairs[:3],
            name,
            folder / f"confused_pairs_{name}.png",
        ).name
    metrics = {n: r.metrics for n, r in ev.models.items()}
    names["per_class"] = plots.per_class_accuracy(
        metrics, study.PER_CLASS_ACCURACY, folder / "per_class_accuracy.png"
    ).name
    names["reliability"] = plots.reliability_diagram(
        {n: m.reliability for n, m in metrics.items()}, folder / "reliability.png"
    ).name
    return names


def build_document(ev: Evaluation, figures: dict[str, str]) -> Document:
    """The whole report, section by section; ``figures`` as :func:`draw_figures` returns."""
    return Document(
        f"Fashion-MNIST service evaluation: {', '.join(ev.models)}",
        [
            *([gate.section(ev.gate)] if ev.gate is not None else []),
            summary.section(ev),
            headline.section(ev),
            against_the_study.section(ev),
            comparison.section(ev, figures),
            *(per_model.section(ev, name, figures) for name in ev.models),
            serving_skew.section(ev),
            this_run.section(ev),
        ],
    )


def earlier_report(folder: Path) -> str | None:
    """When the report in ``folder`` was created (its metrics.json says), or None when
    ``folder`` holds no evaluation report."""
    try:
        metrics = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(metrics, dict) or metrics.get("generator") != GENERATOR:
        return None
    return str(metrics.get("created") or "unknown date")


def _looks_like_report(folder: Path) -> bool:
    if not any(folder.iterdir()):
        return True
    try:
        return json.loads((folder / "metrics.json").read_text()).get("generator") == GENERATOR
    except (OSError, ValueError, AttributeError):
        return False


def write_atomically(out: Path, fill: Callable[[Path], None]) -> Path:
    """Let ``fill`` write into a fresh temporary folder, then swap it in as ``out``.

    An existing ``out`` is replaced only if it is empty or an earlier report, so a typo in
    ``--out`` cannot wipe an unrelated folder.
    """
    out = Path(out).absolute()
    if out.exists() and not (out.is_dir() and _looks_like_report(out)):
        raise ReportError(
            f"{out} exists and is not an earlier evaluation report; pick another --out or remove it"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        fill(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a report is meant to be shared
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old)  # replaces the empty placeholder folder
            try:
                os.replace(tmp, out)
            except OSError:
                os.replace(old, out)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def write_report(ev: Evaluation, out: Path) -> Path:
    def fill(folder: Path) -> None:
        figures = draw_figures(ev, folder)
        doc = build_document(ev, figures)
        (folder / "metrics.json").write_text(json.dumps(metrics_json(ev), indent=2) + "\n")
        write_predictions_csv(ev, folder / "predictions.csv")
        (folder / "report.md").write_text(to_markdown(doc))
        (folder / "report.html").write_text(to_html(doc, folder))
        missing = [i.filename for i in doc.images() if not (folder / i.filename).is_file()]
        if missing:
            raise ReportError(f"figures missing from the report folder: {missing}")

    return write_atomically(out, fill)
