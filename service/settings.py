"""Service settings, read once from ``FMNIST_*`` environment variables and checked.

BentoML reads worker counts and batching limits from the ``@bentoml.service`` /
``@bentoml.api`` decorators when the service module is imported, so the settings are
read at import time too; a bad value stops the server at start-up with a message that
names the variable, the value and what is expected.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# Every model the service knows, in listing order. The required ones must be there; the
# optional ones (``improved``, from training's improved recipe) are served when present.
MODEL_NAMES: tuple[str, ...] = ("baseline", "deeper", "improved")
REQUIRED_MODELS: tuple[str, ...] = ("baseline", "deeper")
OPTIONAL_MODELS: tuple[str, ...] = tuple(n for n in MODEL_NAMES if n not in REQUIRED_MODELS)
PREFIX = "FMNIST_"


class SettingsError(ValueError):
    """An ``FMNIST_*`` environment variable holds a value the service cannot use."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(PREFIX + name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(
            f"{PREFIX}{name}={raw!r} is not an integer (expected >= {minimum})"
        ) from None
    if value < minimum:
        raise SettingsError(f"{PREFIX}{name}={value} is too small (expected >= {minimum})")
    return value


@dataclass(frozen=True)
class ServiceSettings:
    """Everything the service can be told from outside; see the table in docs/api.md."""

    default_model: str = "baseline"
    model_dir: Path | None = None  # None: the BentoML model store (fmnist-baseline, ...)
    workers: int = 2
    ort_intra_threads: int = 1  # per session; workers x intra threads <= cores
    ort_inter_threads: int = 1
    ort_provider: str = "auto"  # auto (CUDA if available, else CPU), cpu, cuda
    batching_max_batch_size: int = 64  # adaptive batching of /classify requests
    batching_max_latency_ms: int = 1000
    max_batch_size: int = 1024  # images per /classify_batch or /classify_npy call
    max_body_bytes: int = 10 * 1024 * 1024

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServiceSettings:
        env = os.environ if env is None else env
        default_model = env.get(PREFIX + "DEFAULT_MODEL", "baseline").strip() or "baseline"
        if default_model not in MODEL_NAMES:
            raise SettingsError(
                f"{PREFIX}DEFAULT_MODEL={default_model!r} is not a known model "
                f"(expected one of {', '.join(MODEL_NAMES)})"
            )
        provider = env.get(PREFIX + "ORT_PROVIDER", "auto").strip().lower() or "auto"
        if provider not in ("auto", "cpu", "cuda"):
            raise SettingsError(
                f"{PREFIX}ORT_PROVIDER={provider!r} is not known (expected auto, cpu or cuda)"
            )
        raw_dir = env.get(PREFIX + "MODEL_DIR", "").strip()
        model_dir = Path(raw_dir) if raw_dir else None
        settings = cls(
            default_model=default_model,
            model_dir=model_dir,
            workers=_int(env, "WORKERS", cls.workers, 1),
            ort_intra_threads=_int(env, "ORT_INTRA_THREADS", cls.ort_intra_threads, 0),
            ort_inter_threads=_int(env, "ORT_INTER_THREADS", cls.ort_inter_threads, 0),
            ort_provider=provider,
            batching_max_batch_size=_int(
                env, "BATCHING_MAX_BATCH_SIZE", cls.batching_max_batch_size, 2
            ),
            batching_max_latency_ms=_int(
                env, "BATCHING_MAX_LATENCY_MS", cls.batching_max_latency_ms, 1
            ),
            max_batch_size=_int(env, "MAX_BATCH_SIZE", cls.max_batch_size, 1),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", cls.max_body_bytes, 1024),
        )
        return settings

    def check_model_dir(self) -> None:
        """Fail early when FMNIST_MODEL_DIR is set but lacks a required model file."""
        if self.model_dir is None:
            return
        missing = [n for n in REQUIRED_MODELS if not (self.model_dir / f"{n}.onnx").is_file()]
        if missing:
            raise SettingsError(
                f"{PREFIX}MODEL_DIR={self.model_dir} lacks "
                + ", ".join(f"{n}.onnx" for n in missing)
                + " (expected the files written by fmnist-export, or unset it to load the "
                "models from the BentoML store)"
            )

    def models_in_dir(self) -> tuple[str, ...]:
        """The models FMNIST_MODEL_DIR provides: the required ones (checked) and any optional."""
        if self.model_dir is None:
            raise SettingsError(f"{PREFIX}MODEL_DIR is not set")
        self.check_model_dir()
        return tuple(
            n
            for n in MODEL_NAMES
            if n in REQUIRED_MODELS or (self.model_dir / f"{n}.onnx").is_file()
        )

    def check_default_served(self, served: tuple[str, ...], source: str) -> None:
        """FMNIST_DEFAULT_MODEL must be one of the models actually served."""
        if self.default_model not in served:
            raise SettingsError(
                f"{PREFIX}DEFAULT_MODEL={self.default_model!r} is not served: {source} "
                f"provides {', '.join(served)} (add {self.default_model} there or pick one "
                "of those)"
            )
