"""Service settings: ``FMNIST_*`` environment variables, typed and checked once at start-up.

BentoML reads the worker count from the ``@bentoml.service`` decorator when the service
module is imported, so the settings are read at import time too. A bad value stops
``bentoml serve`` before any worker starts, with one line that names the variable, the
value and what is expected (:func:`describe_error`). The table of every setting is in
docs/api.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

PREFIX = "FMNIST_"
# Below this probability the predicted class is less likely than all the others together.
DEFAULT_LOW_CONFIDENCE = 0.5
RETIRED = {
    "BATCHING_MAX_LATENCY_MS": "the batcher keeps no latency budget any more; use "
    "FMNIST_BATCHING_MAX_WAIT_MS (how long a request may wait for others) and "
    "FMNIST_BATCHING_MAX_QUEUE (how many may wait before 503)",
}


class SettingsError(ValueError):
    """An ``FMNIST_*`` environment variable holds a value the service cannot use."""


class ServiceSettings(BaseSettings):
    """Everything the service can be told from outside; see the table in docs/api.md."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, frozen=True, extra="ignore", validate_default=True
    )

    # Where the models come from: a folder of exported ONNX files, or (unset) the BentoML
    # model store (fmnist-<name>, imported with python -m service.import_models).
    model_dir: Path | None = None
    # Which of them to serve, in listing order; each one listed must be there. Unset:
    # every model found, by name.
    models: Annotated[tuple[str, ...] | None, NoDecode] = None
    default_model: str | None = None  # unset: the first served model
    # The aliases file (service/versions.py). Unset: aliases.json in FMNIST_MODEL_DIR, or
    # fmnist-aliases.json in BentoML's home for the model store.
    aliases_file: Path | None = None
    # How often each worker looks for a changed aliases file (a promotion or a rollback).
    aliases_poll_s: float = Field(1.0, gt=0, le=3600)
    # Shadow traffic (service/shadow.py): the share of production requests also run on the
    # candidate, after the answer; 0 turns it off.
    shadow_sample_rate: float = Field(1.0, ge=0, le=1)
    # images in the shadow at once, per worker: a request larger than this is never shadowed
    shadow_max_queue: int = Field(2048, ge=1, le=100_000)
    # Where disagreements and low-confidence inputs are kept for labelling (unset: nowhere),
    # and how large that folder may grow, all workers together.
    capture_dir: Path | None = None
    capture_max_bytes: int = Field(64 * 1024 * 1024, ge=64 * 1024, le=1 << 40)
    # SIGTERM: keep answering (each answer closing its connection) until no request came
    # for drain_quiet_s, at most drain_s, then stop (service/lifecycle.py). 0: stop at once.
    drain_s: float = Field(10.0, ge=0, le=3600)
    drain_quiet_s: float = Field(1.0, gt=0, le=60)
    workers: int = Field(2, ge=1, le=64)
    ort_intra_threads: int = Field(1, ge=0, le=256)  # per session; workers x threads <= cores
    ort_inter_threads: int = Field(1, ge=0, le=256)
    ort_provider: str = "auto"  # auto (CUDA if available, else CPU), cpu, cuda
    batching_max_batch_size: int = Field(64, ge=1, le=4096)  # images per onnxruntime call
    batching_max_wait_ms: float = Field(0.0, ge=0, le=1000)  # under load only; see batching
    batching_max_queue: int = Field(256, ge=1, le=100_000)  # per model and worker
    max_batch_size: int = Field(1024, ge=1, le=100_000)  # images per batch request
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024, le=1 << 31)
    # One listening socket per worker (SO_REUSEPORT): the kernel spreads connections over
    # the workers instead of letting the first one that wakes up take them all.
    reuse_port: bool = True
    # Close the excess connections of a worker that holds more than its share, so that
    # their clients reconnect to another worker (service/workers.py).
    balance_connections: bool = True
    # Close a kept-alive connection after this many requests (0: never), as nginx does.
    keepalive_requests: int = Field(100, ge=0, le=10_000_000)
    # Answers whose confidence is below this are counted in fmnist_low_confidence_total.
    low_confidence: float = Field(DEFAULT_LOW_CONFIDENCE, gt=0, le=1)
    access_log: bool = False  # BentoML's per-request access log line
    tracing: bool = False  # BentoML's OpenTelemetry spans on the prediction endpoints
    debug: bool = False  # tracebacks instead of one-line start-up errors

    @field_validator("model_dir", "aliases_file", "capture_dir", mode="before")
    @classmethod
    def _empty_dir_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("models", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            names = tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
            return names or None
        return value

    @field_validator("default_model", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("ort_provider", mode="before")
    @classmethod
    def _provider(cls, value: Any) -> Any:
        value = str(value).strip().lower() or "auto"
        if value not in ("auto", "cpu", "cuda"):
            raise ValueError("expected auto, cpu or cuda")
        return value

    @model_validator(mode="after")
    def _default_among_models(self) -> ServiceSettings:
        if self.models and self.default_model and self.default_model not in self.models:
            raise ValueError(
                f"FMNIST_DEFAULT_MODEL={self.default_model!r} is not in FMNIST_MODELS "
                f"({', '.join(self.models)})"
            )
        return self

    @property
    def batching_max_wait_s(self) -> float:
        return self.batching_max_wait_ms / 1000.0

    def choose_default(self, served: tuple[str, ...], source: str) -> str:
        """FMNIST_DEFAULT_MODEL, which must be served, or the first served model."""
        if self.default_model is None:
            return served[0]
        if self.default_model not in served:
            raise SettingsError(
                f"{PREFIX}DEFAULT_MODEL={self.default_model!r} is not served: {source} "
                f"provides {', '.join(served)} (pick one of those, or add the model there)"
            )
        return self.default_model


def describe_error(exc: ValidationError) -> str:
    """pydantic's report → one line per bad variable, joined: name, value, expectation."""
    parts = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        name = PREFIX + field.upper() if field else "settings"
        value = error.get("input")
        message = str(error["msg"]).removeprefix("Value error, ")
        if field:
            parts.append(f"{name}={value!r}: {message}")
        else:
            parts.append(message)
    return "; ".join(parts)


class _GivenSettings(ServiceSettings):
    """ServiceSettings from the mapping given to :func:`load_settings` alone: no value is
    filled in from the process environment (pydantic-settings reads it by default)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def load_settings(env: dict[str, str] | None = None) -> ServiceSettings:
    """Settings from ``env`` (default: the process environment), or a one-line SettingsError."""
    import os

    source = os.environ if env is None else env
    for name, why in RETIRED.items():
        if source.get(PREFIX + name, "").strip():
            raise SettingsError(f"{PREFIX}{name} is no longer read: {why}")
    values = {
        key[len(PREFIX) :].lower(): value
        for key, value in source.items()
        if key.startswith(PREFIX) and key[len(PREFIX) :].lower() in ServiceSettings.model_fields
    }
    try:
        # A given ``env`` is the whole environment: nothing comes from the process's own.
        return _GivenSettings.model_validate(values) if env is not None else ServiceSettings()
    except ValidationError as exc:
        raise SettingsError(describe_error(exc)) from None
