"""Comparison of the models: the paired tests, per-class accuracy side by side and
calibration, each a subsection (the sections of single models follow it)."""

from __future__ import annotations

from evaluation.document import Section
from evaluation.run import Evaluation
from evaluation.sections import calibration, paired, per_class

TITLE = "Comparison of the models"


def section(ev: Evaluation, figures: dict[str, str]) -> Section:
    names = ", ".join(ev.models)
    return Section(
        TITLE,
        [f"The evaluated models ({names}) on the same test images."],
        [
            paired.section(ev),
            per_class.section(ev, figures),
            calibration.section(ev, figures),
        ],
    )
