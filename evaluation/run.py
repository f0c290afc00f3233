"""What one evaluation run produced: the data every report file is built from."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from evaluation.client import ServedModel, ServedPredictions
from evaluation.metrics import ModelMetrics, PairedComparison, ServingSkew


@dataclass(frozen=True)
class DatasetInfo:
    folder: str
    images: int
    official: bool  # test files match the published Fashion-MNIST md5 checksums
    limit: int | None


@dataclass(frozen=True)
class ModelResult:
    name: str
    served: ServedPredictions
    metrics: ModelMetrics
    info: ServedModel | None
    skew: ServingSkew | None
    skew_note: str = ""  # why the skew was not checked


@dataclass(frozen=True)
class Evaluation:
    url: str
    dataset: DatasetInfo
    images: np.ndarray  # (N, 28, 28) uint8, for the galleries
    labels: np.ndarray  # (N,)
    models: dict[str, ModelResult]
    comparisons: list[PairedComparison]
    created: str
    command: str
    environment: dict[str, str] = field(default_factory=dict)
