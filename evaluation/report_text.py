"""The report's content: headline, comparison with the study, the paired test, per-class
scores, calibration, serving skew and figures, as a :class:`~evaluation.document.Document`.
"""

from __future__ import annotations

import json

import numpy as np

from fmnist import study
from fmnist.registry import study_models
from evaluation.document import Bullets, Document, Image, Section, Table
from evaluation.report_fmt import ALPHA, p_value, pct, pp, with_ci
from evaluation.report_pairs import in_study, paired_section, study_section, verdict
from evaluation.results import Evaluation, ModelResult
from fmnist.dataset import CLASS_NAMES

__all__ = ["ALPHA", "build_document", "p_value", "pct", "pp", "verdict", "with_ci"]


def _caveats(ev: Evaluation) -> list[str]:
    notes = []
    if not ev.dataset.official:
        notes.append(
            "**These images are not the official Fashion-MNIST test set** (their md5 "
            "checksums differ), so no number here is comparable with the study."
        )
    if ev.dataset.limit is not None:
        notes.append(
            f"Only the first {ev.dataset.images:,} test images were sent (--limit); "
            "intervals are wider and the recorded test accuracy covers all 10,000."
        )
    return notes


def trained_epochs(r: ModelResult) -> int | None:
    """Epochs from the served model's training_config metadata (a dict or a JSON string)."""
    config = ((r.info.raw if r.info else {}).get("metadata") or {}).get("training_config")
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except ValueError:
            return None
    epochs = config.get("epochs") if isinstance(config, dict) else None
    return epochs if isinstance(epochs, int) else None


def temperature_of(r: ModelResult) -> str | None:
    """The temperature folded into the served graph (the improved recipe's metadata)."""
    value = ((r.info.raw if r.info else {}).get("metadata") or {}).get("temperature")
    try:
        return None if value is None or float(value) == 1.0 else f"{float(value):g}"
    except (TypeError, ValueError):
        return None


def summary(ev: Evaluation) -> Section:
    items = []
    for name, r in ev.models.items():
        m = r.metrics
        hardest = m.hardest_class()
        claimed = study.TEST_ACCURACY.get(name)
        head = f"**{name}**: {with_ci(m.accuracy)} accuracy"
        if not in_study(name):
            items.append(
                f"{head}; hardest class {hardest.name} at {pct(hardest.accuracy, 1)}; "
                f"{study.BEYOND}."
            )
            continue
        items.append(
            head
            + (f" (study: {pct(claimed)})" if claimed is not None else "")
            + f"; hardest class {hardest.name} at {pct(hardest.accuracy, 1)} "
            f"(study: {study.HARDEST_CLASS} at "
            f"{pct(study.PER_CLASS_ACCURACY[study.HARDEST_CLASS], 1)})."
        )
        epochs = trained_epochs(r)
        if epochs is not None and epochs != study.EPOCHS:
            items.append(
                f"The served {name} was trained for {epochs} epoch(s); the study "
                f"trained {study.EPOCHS}, so its numbers are not expected to match."
            )
    for c in ev.comparisons:
        same = c.p_value >= ALPHA
        items.append(
            f"{c.model_a} vs {c.model_b}: exact McNemar {p_value(c.p_value)}: "
            + (
                "consistent with 'the two perform the same'"
                if same
                else "**the data contradict 'the two perform the same'**"
            )
            + f" (accuracy difference {pp(c.difference.estimate)})."
        )
    checked = {n: r.skew for n, r in ev.models.items() if r.skew is not None}
    skewed = [n for n, s in checked.items() if not s.ok]
    if skewed:
        items.append(
            f"**Serving skew** in {', '.join(skewed)}: the service's answers differ "
            "from the same ONNX file run in-process."
        )
    elif checked:
        items.append(
            f"No serving skew: the answers for {', '.join(checked)} match the ONNX "
            "file(s) run in-process."
        )
    unchecked = [n for n in ev.models if n not in checked]
    if unchecked:
        items.append(f"Serving skew not checked for {', '.join(unchecked)} (no local ONNX file).")
    return Section("Summary", [*_caveats(ev), Bullets(items)])


def headline(ev: Evaluation) -> Section:
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
            "ECE (15 bins)",
            "recorded test acc. (/models)",
            "measured − recorded",
            "parameters",
        ],
        rows,
        "Accuracy of what the service answered, with a bootstrap 95% interval "
        "(10,000 resamples). NLL: mean −log p(true class). ECE: expected calibration error. "
        "On the full official test set, measured − recorded should be 0: the recorded number "
        "is the exporter's own test accuracy.",
    )
    text = [
        f"{ev.dataset.images:,} test images from {ev.dataset.folder} were sent to "
        f"{ev.url} as .npy batches; every number below is computed from the service's answers."
    ]
    return Section("Headline", [*text, table])


def per_class_section(ev: Evaluation, figures: dict[str, str]) -> Section:
    """One table of per-class accuracy (every model side by side, with the study's), one of
    precision and F1, so that three models still fit the page."""
    names = list(ev.models)
    accuracy_rows, quality_rows = [], []
    for i, cls in enumerate(CLASS_NAMES):
        per_class = [ev.models[n].metrics.per_class[i] for n in names]
        accuracy_rows.append(
            [cls, f"{int(np.sum(ev.labels == i)):,}", pct(study.PER_CLASS_ACCURACY[cls], 1)]
            + [pct(s.accuracy, 1) for s in per_class]
        )
        quality_rows.append([cls] + [f"{pct(s.precision, 1)} / {pct(s.f1, 1)}" for s in per_class])
    blocks: list = [
        Table(
            ["class", "images", "study acc.", *(f"{n} acc." for n in names)],
            accuracy_rows,
            "Per-class accuracy is the recall: the share of the class's images the model "
            "labels correctly (the study's definition; its table does not say which of "
            "baseline and deeper it describes).",
        ),
        Table(
            ["class", *(f"{n} precision / F1" for n in names)],
            quality_rows,
            "Precision: the share of the images labelled as the class that are the class. "
            "F1: the harmonic mean of precision and per-class accuracy.",
        ),
    ]
    blocks.append(
        Image(
            figures["per_class"],
            "Per-class accuracy of each served model; black ticks: the study's per-class table.",
        )
    )
    for n in names:
        pairs = ev.models[n].metrics.confused_pairs
        blocks.append(
            Table(
                ["true class", "predicted as", "images", "share of the true class"],
                [
                    [
                        CLASS_NAMES[p.true],
                        CLASS_NAMES[p.predicted],
                        f"{p.count:,}",
                        pct(p.share_of_true, 1),
                    ]
                    for p in pairs
                ],
                f"{n}: the most frequent confusions.",
            )
        )
    return Section("Per class", blocks)


def calibration_section(ev: Evaluation, figures: dict[str, str]) -> Section:
    lines = []
    for n, r in ev.models.items():
        m = r.metrics
        mean_conf = float(np.mean(r.served.confidence)) if len(r.served.confidence) else 0.0
        lean = "over-confident" if mean_conf > m.accuracy.estimate else "under-confident"
        temperature = temperature_of(r)
        lines.append(
            f"{n}: ECE {pct(m.ece)}, NLL {m.nll:.4f}; mean confidence "
            f"{pct(mean_conf)} against accuracy {pct(m.accuracy.estimate)} "
            f"(on average {lean})."
            + (
                f" Its probabilities are temperature-scaled (T = {temperature}, folded "
                "into the ONNX graph)."
                if temperature is not None
                else ""
            )
        )
    return Section(
        "Calibration",
        [
            "Is a 90% answer right 90% of the time? Confidences are grouped in 15 equal-width "
            "bins; ECE is the image-weighted gap between each bin's accuracy and its mean "
            "confidence.",
            Bullets(lines),
            Image(
                figures["reliability"],
                "Reliability diagrams: bars below the diagonal mean "
                "over-confidence; the green line is the share of images per bin.",
            ),
        ],
    )


def skew_section(ev: Evaluation) -> Section:
    rows, notes = [], []
    for n, r in ev.models.items():
        s = r.skew
        if s is None:
            notes.append(f"{n}: not checked ({r.skew_note}).")
            continue
        same = {True: "yes", False: "**no**", None: "unknown (no sha256)"}[s.same_file]
        rows.append(
            [
                n,
                same,
                f"{s.images:,}",
                f"{s.argmax_mismatches:,}",
                f"{s.max_abs_prob_diff:.2e}",
                f"{s.mean_abs_prob_diff:.2e}",
                "no skew" if s.ok else "**SKEW**",
            ]
        )
    blocks: list = [
        "The same ONNX file run in-process with onnxruntime should give the "
        "served answers (up to float rounding in JSON). Any difference means the "
        "service transforms inputs or outputs, or serves another file."
    ]
    if rows:
        blocks.append(
            Table(
                [
                    "model",
                    "same file (sha256)",
                    "images",
                    "different class",
                    "max |Δp|",
                    "mean |Δp|",
                    "verdict",
                ],
                rows,
                "Δp: served minus in-process probability, over all classes.",
            )
        )
    if notes:
        blocks.append(Bullets(notes))
    return Section("Serving skew", blocks)


def figures_section(ev: Evaluation, figures: dict[str, str]) -> Section:
    blocks: list = []
    for n in ev.models:
        blocks += [
            Image(
                figures[f"confusion_{n}"],
                f"{n}: confusion matrix, each row normalised to 100% of its true class.",
            ),
            Image(
                figures[f"mistakes_{n}"],
                f"{n}: the mistakes it was most sure of "
                "(#test index, true and predicted class, confidence).",
            ),
            Image(figures[f"pairs_{n}"], f"{n}: examples of its three most frequent confusions."),
        ]
    return Section("Confusions and mistakes", blocks)


def run_section(ev: Evaluation) -> Section:
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


def build_document(ev: Evaluation, figures: dict[str, str]) -> Document:
    return Document(
        f"Fashion-MNIST service evaluation: {', '.join(ev.models)}",
        [
            summary(ev),
            headline(ev),
            study_section(ev),
            paired_section(ev),
            per_class_section(ev, figures),
            calibration_section(ev, figures),
            skew_section(ev),
            figures_section(ev, figures),
            run_section(ev),
        ],
    )
