"""The report's content: headline, comparison with the study, the paired test, per-class
scores, calibration, serving skew and figures, as a :class:`~evaluation.document.Document`.
"""

from __future__ import annotations

import json

import numpy as np

from evaluation import study
from evaluation.document import Bullets, Document, Image, Section, Table
from evaluation.metrics import Interval, PairedComparison, accuracy_ci
from evaluation.results import Evaluation, ModelResult
from fmnist.dataset import CLASS_NAMES

ALPHA = 0.05


def pct(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x * 100:.{digits}f}%"


def with_ci(ci: Interval, digits: int = 2) -> str:
    return f"{pct(ci.estimate, digits)} [{pct(ci.low, digits)}, {pct(ci.high, digits)}]"


def pp(x: float) -> str:
    """A difference of proportions, in percentage points with a sign."""
    return f"{x * 100:+.2f} pp"


def p_value(p: float) -> str:
    """``p = 0.13`` or ``p < 0.0001``, ready to follow the test's name."""
    return f"p = {p:.2g}" if p >= 1e-4 else "p < 0.0001"


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


def summary(ev: Evaluation) -> Section:
    items = []
    for name, r in ev.models.items():
        m = r.metrics
        hardest = m.hardest_class()
        claimed = study.TEST_ACCURACY.get(name)
        items.append(
            f"**{name}**: {with_ci(m.accuracy)} accuracy"
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


def study_section(ev: Evaluation) -> Section:
    blocks: list = []
    rows = []
    for name, r in ev.models.items():
        claimed = study.TEST_ACCURACY.get(name)
        acc = r.metrics.accuracy
        verdict = (
            "no study number"
            if claimed is None
            else (
                "consistent (inside the CI)"
                if acc.contains(claimed)
                else ("better than the study" if acc.low > claimed else "worse than the study")
            )
        )
        hardest = r.metrics.hardest_class()
        shirt = CLASS_NAMES.index(study.HARDEST_CLASS)
        mask = ev.labels == shirt
        shirt_ci = accuracy_ci(ev.labels[mask], r.served.class_index[mask]) if mask.any() else None
        rows.append(
            [
                name,
                pct(claimed),
                pct(acc.estimate),
                verdict,
                f"{hardest.name} ({pct(hardest.accuracy, 1)})",
                "n/a" if shirt_ci is None else with_ci(shirt_ci, 1),
            ]
        )
    blocks.append(
        Table(
            [
                "model",
                "study test acc.",
                "measured",
                "verdict",
                "hardest class (measured)",
                f"{study.HARDEST_CLASS} accuracy [95% CI]",
            ],
            rows,
            f"The study reports {pct(study.TEST_ACCURACY['baseline'])} for both models and "
            f"{study.HARDEST_CLASS} as the hardest class at "
            f"{pct(study.PER_CLASS_ACCURACY[study.HARDEST_CLASS], 1)}.",
        )
    )
    blocks.append("The study's own text does not agree with itself in places:")
    blocks.append(Bullets(list(study.INCONSISTENCIES)))
    return Section("Against the study", blocks)


def verdict(c: PairedComparison) -> str:
    d = c.difference
    interval = f"{pp(d.estimate)}, 95% CI [{pp(d.low)}, {pp(d.high)}]"
    if c.p_value < ALPHA:
        better, worse = (c.model_a, c.model_b) if c.only_a > c.only_b else (c.model_b, c.model_a)
        return (
            f"**The data do not support 'the two models perform the same'.** {better} is "
            f"right on {max(c.only_a, c.only_b):,} images where {worse} is wrong, and "
            f"{worse} on only {min(c.only_a, c.only_b):,} the other way (exact McNemar "
            f"{p_value(c.p_value)}); accuracy {c.model_a} − {c.model_b}: {interval}."
        )
    widest = max(abs(d.low), abs(d.high))
    return (
        f"**The data are consistent with 'the two models perform the same'** (exact "
        f"McNemar {p_value(c.p_value)}; accuracy {c.model_a} − {c.model_b}: {interval}). "
        f"That is no evidence of a difference, not proof of equality: differences of up "
        f"to {widest * 100:.2f} percentage points are not ruled out."
    )


def paired_section(ev: Evaluation) -> Section:
    if not ev.comparisons:
        return Section(
            "Do the models perform the same?",
            ["Only one model was evaluated; the paired test needs two."],
        )
    blocks: list = []
    for c in ev.comparisons:
        blocks.append(
            Table(
                ["", f"{c.model_b} right", f"{c.model_b} wrong"],
                [
                    [f"{c.model_a} right", f"{c.both_right:,}", f"{c.only_a:,}"],
                    [f"{c.model_a} wrong", f"{c.only_b:,}", f"{c.both_wrong:,}"],
                ],
                f"{c.model_a} vs {c.model_b} on the same images. McNemar's test uses only the "
                "off-diagonal (discordant) cells.",
            )
        )
        blocks.append(verdict(c))
        blocks.append(
            f"The two models predict the same class for {pct(c.agreement)} of the "
            f"images; {c.discordant:,} images are right under one model only. Equal "
            "accuracy would not mean equal predictions."
        )
    return Section("Do the models perform the same?", blocks)


def per_class_section(ev: Evaluation, figures: dict[str, str]) -> Section:
    names = list(ev.models)
    header = ["class", "images", "study acc."]
    for n in names:
        header += [f"{n} acc.", f"{n} precision", f"{n} F1"]
    rows = []
    for i, cls in enumerate(CLASS_NAMES):
        row = [cls, f"{int(np.sum(ev.labels == i)):,}", pct(study.PER_CLASS_ACCURACY[cls], 1)]
        for n in names:
            s = ev.models[n].metrics.per_class[i]
            row += [pct(s.accuracy, 1), pct(s.precision, 1), pct(s.f1, 1)]
        rows.append(row)
    blocks: list = [
        Table(
            header,
            rows,
            "Per-class accuracy is the recall: the share of the "
            "class's images the model labels correctly (the study's definition).",
        )
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
        lines.append(
            f"{n}: ECE {pct(m.ece)}, NLL {m.nll:.4f}; mean confidence "
            f"{pct(mean_conf)} against accuracy {pct(m.accuracy.estimate)} "
            f"(on average {lean})."
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
