"""The report's sections, one module each, named after the section it builds.

Each module's ``section()`` turns an :class:`~evaluation.run.Evaluation` (and the figure
file names, where it shows figures) into a :class:`~evaluation.document.Section`; nothing
here computes a statistic (that is :mod:`evaluation.metrics`) or writes a file (that is
:mod:`evaluation.report`, which also sets their order).
"""
