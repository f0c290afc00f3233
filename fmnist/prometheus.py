"""Reading the service's ``/metrics`` text: one helper on prometheus-client's parser.

    text = httpx.get(url + "/metrics").text
    metric_total(text, "fmnist_shadow_predictions_total", model="baseline", agreement="agree")

Every package that reads the service's metrics (evaluation's gate, the load tests, the
benchmarks, the tests) uses these, never a regex: label values may hold any character.
prometheus-client is imported when a function is called, so ``fmnist`` stays importable
without it.
"""

from __future__ import annotations

from typing import Any


def metric_samples(text: str) -> list[Any]:
    """Every sample of a Prometheus text exposition (prometheus_client's ``Sample``s);
    none when the text is not one."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        return [s for family in text_string_to_metric_families(text) for s in family.samples]
    except ValueError:
        return []


def metric_total(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels`` (0 if none):
    a counter or a histogram's ``_sum``/``_count`` over every worker, model or class."""
    return sum(
        s.value
        for s in metric_samples(text)
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def metric_totals(text: str, names: tuple[str, ...], **labels: str) -> dict[str, float]:
    """:func:`metric_total` of several names, reading the text once; a name with no
    sample is left out."""
    totals: dict[str, float] = {}
    for s in metric_samples(text):
        if s.name in names and all(s.labels.get(k) == v for k, v in labels.items()):
            totals[s.name] = totals.get(s.name, 0.0) + s.value
    return totals
