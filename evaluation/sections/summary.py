"""Summary: caveats about the data, each model's accuracy against the study, the paired
tests' verdicts and whether the service answers as its ONNX files do."""

from __future__ import annotations

from evaluation.document import Bullets, Section
from evaluation.metrics import ALPHA
from evaluation.run import Evaluation, in_study
from evaluation.sections.formatting import p_value, pct, pp, with_ci
from fmnist import study


def caveats(ev: Evaluation) -> list[str]:
    """What limits every number in the report: unofficial test files, a --limit."""
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


def _accuracy_lines(ev: Evaluation) -> list[str]:
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
        epochs = r.info.trained_epochs if r.info else None
        if epochs is not None and epochs != study.EPOCHS:
            items.append(
                f"The served {name} was trained for {epochs} epoch(s); the study "
                f"trained {study.EPOCHS}, so its numbers are not expected to match."
            )
    return items


def _comparison_lines(ev: Evaluation) -> list[str]:
    return [
        f"{c.model_a} vs {c.model_b}: exact McNemar {p_value(c.p_value)}: "
        + (
            "consistent with 'the two perform the same'"
            if c.p_value >= ALPHA
            else "**the data contradict 'the two perform the same'**"
        )
        + f" (accuracy difference {pp(c.difference.estimate)})."
        for c in ev.comparisons
    ]


def _skew_lines(ev: Evaluation) -> list[str]:
    items = []
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
    return items


def section(ev: Evaluation) -> Section:
    items = [*_accuracy_lines(ev), *_comparison_lines(ev), *_skew_lines(ev)]
    return Section("Summary", [*caveats(ev), Bullets(items)])
