"""The report's sections, one module each, in the order the document shows them.

Each module's ``section()`` turns an :class:`~evaluation.run.Evaluation` (and the figure
file names, where it shows figures) into a :class:`~evaluation.document.Section`; nothing
here computes a statistic (that is :mod:`evaluation.metrics`) or writes a file (that is
:mod:`evaluation.report`).
"""

from __future__ import annotations

from evaluation.document import Document
from evaluation.run import Evaluation
from evaluation.sections import (
    against_the_study,
    calibration,
    confusions,
    headline,
    paired_test,
    per_class,
    serving_skew,
    summary,
    this_run,
)


def build_document(ev: Evaluation, figures: dict[str, str]) -> Document:
    """The whole report; ``figures`` maps figure keys to PNG names (report.draw_figures)."""
    return Document(
        f"Fashion-MNIST service evaluation: {', '.join(ev.models)}",
        [
            summary.section(ev),
            headline.section(ev),
            against_the_study.section(ev),
            paired_test.section(ev),
            per_class.section(ev, figures),
            calibration.section(ev, figures),
            serving_skew.section(ev),
            confusions.section(ev, figures),
            this_run.section(ev),
        ],
    )
