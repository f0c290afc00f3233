"""service/settings.py pinned where it is defined: every default, every bound, each message.

The values are typed out again from README.md's settings table, so that a changed default
or bound has to be changed twice, on purpose. Part of `make mutation` (see pyproject.toml).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service import settings as settings_mod
from service.settings import (
    PREFIX,
    RETIRED,
    ServiceSettings,
    SettingsError,
    describe_error,
    load_settings,
)

# README.md's table, field by field (FMNIST_<NAME>).
DEFAULTS = {
    "model_dir": None,
    "models": None,
    "default_model": None,
    "aliases_file": None,
    "aliases_poll_s": 1.0,
    "shadow_sample_rate": 1.0,
    "shadow_max_queue": 2048,
    "capture_dir": None,
    "capture_max_bytes": 64 * 1024 * 1024,
    "drain_s": 10.0,
    "drain_quiet_s": 1.0,
    "workers": 2,
    "ort_intra_threads": 1,
    "ort_inter_threads": 1,
    "ort_provider": "auto",
    "batching_max_batch_size": 64,
    "batching_max_wait_ms": 0.0,
    "batching_max_queue": 256,
    "max_batch_size": 1024,
    "max_body_bytes": 10 * 1024 * 1024,
    "reuse_port": True,
    "balance_connections": True,
    "keepalive_requests": 100,
    "low_confidence": 0.5,
    "access_log": False,
    "tracing": False,
    "debug": False,
}

# (field, least accepted, most accepted)
BOUNDS = [
    ("workers", 1, 64),
    ("ort_intra_threads", 0, 256),
    ("ort_inter_threads", 0, 256),
    ("batching_max_batch_size", 1, 4096),
    ("batching_max_wait_ms", 0, 1000),
    ("batching_max_queue", 1, 100_000),
    ("max_batch_size", 1, 100_000),
    ("max_body_bytes", 1024, 1 << 31),
    ("keepalive_requests", 0, 10_000_000),
    ("shadow_sample_rate", 0, 1),
    ("shadow_max_queue", 1, 100_000),
    ("capture_max_bytes", 64 * 1024, 1 << 40),
    ("drain_s", 0, 3600),
]


def error_of(env: dict[str, str]) -> str:
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    return str(caught.value)


def test_the_prefix_and_every_default() -> None:
    assert PREFIX == "FMNIST_"
    assert load_settings({}).model_dump() == DEFAULTS
    assert set(ServiceSettings.model_fields) == set(DEFAULTS)
    assert load_settings({}).batching_max_wait_s == 0.0


def test_the_process_environment_is_read_when_no_env_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in DEFAULTS:
        monkeypatch.delenv(PREFIX + name.upper(), raising=False)
    monkeypatch.setenv("FMNIST_WORKERS", "5")
    monkeypatch.setenv("FMNIST_DATA_DIR", "/somewhere")  # the dataset's variable: not ours
    assert load_settings().workers == 5
    # A value in an explicit env wins over the process's own. (A field absent from it is
    # still read from the process: pydantic-settings fills it in.)
    assert load_settings({"FMNIST_WORKERS": "3"}).workers == 3
    monkeypatch.setenv("FMNIST_WORKERS", "0")
    with pytest.raises(SettingsError, match=r"^FMNIST_WORKERS='0': Input should be greater"):
        load_settings()


@pytest.mark.parametrize(("field", "low", "high"), BOUNDS)
def test_bounds_are_inclusive_and_one_step_beyond_is_refused(
    field: str, low: int, high: int
) -> None:
    var = PREFIX + field.upper()
    assert getattr(load_settings({var: str(low)}), field) == low
    assert getattr(load_settings({var: str(high)}), field) == high
    assert error_of({var: str(low - 1)}) == (
        f"{var}='{low - 1}': Input should be greater than or equal to {low}"
    )
    assert error_of({var: str(high + 1)}) == (
        f"{var}='{high + 1}': Input should be less than or equal to {high}"
    )


def test_batching_wait_is_milliseconds_and_may_be_fractional() -> None:
    s = load_settings({"FMNIST_BATCHING_MAX_WAIT_MS": "2.5"})
    assert s.batching_max_wait_ms == 2.5 and s.batching_max_wait_s == pytest.approx(0.0025)
    assert error_of({"FMNIST_BATCHING_MAX_WAIT_MS": "-0.5"}) == (
        "FMNIST_BATCHING_MAX_WAIT_MS='-0.5': Input should be greater than or equal to 0"
    )


def test_model_dir_blank_is_unset() -> None:
    assert load_settings({"FMNIST_MODEL_DIR": ""}).model_dir is None
    assert load_settings({"FMNIST_MODEL_DIR": "   "}).model_dir is None
    assert load_settings({"FMNIST_MODEL_DIR": "/m/onnx"}).model_dir == Path("/m/onnx")
    assert load_settings({"FMNIST_MODEL_DIR": " x "}).model_dir == Path(" x ")


def test_models_are_comma_separated_trimmed_and_deduplicated() -> None:
    assert load_settings({"FMNIST_MODELS": "deeper"}).models == ("deeper",)
    got = load_settings({"FMNIST_MODELS": " deeper , baseline,deeper,, "}).models
    assert got == ("deeper", "baseline")  # first mention keeps its place
    assert load_settings({"FMNIST_MODELS": " , ,"}).models is None
    assert load_settings({"FMNIST_MODELS": ""}).models is None
    assert ServiceSettings(models=("a", "b")).models == ("a", "b")  # not a string: as given


def test_default_model_blank_is_unset() -> None:
    assert load_settings({"FMNIST_DEFAULT_MODEL": "  "}).default_model is None
    assert load_settings({"FMNIST_DEFAULT_MODEL": "deeper"}).default_model == "deeper"


def test_provider_is_trimmed_lowercased_and_checked() -> None:
    for given, read in [(" CPU ", "cpu"), ("Cuda", "cuda"), ("auto", "auto"), ("  ", "auto")]:
        assert load_settings({"FMNIST_ORT_PROVIDER": given}).ort_provider == read
    assert load_settings({"FMNIST_ORT_PROVIDER": ""}).ort_provider == "auto"
    for wrong in ("tpu", "gpu", "tensorrt", "rocm"):  # only these three are served
        assert error_of({"FMNIST_ORT_PROVIDER": wrong}) == (
            f"FMNIST_ORT_PROVIDER='{wrong}': expected auto, cpu or cuda"
        )


def test_booleans_read_the_usual_spellings() -> None:
    s = load_settings(
        {"FMNIST_REUSE_PORT": "0", "FMNIST_ACCESS_LOG": "true", "FMNIST_TRACING": "1"}
    )
    assert (s.reuse_port, s.access_log, s.tracing, s.debug) == (False, True, True, False)
    assert load_settings({"FMNIST_DEBUG": "yes"}).debug is True
    assert load_settings({}).balance_connections is True
    assert load_settings({"FMNIST_BALANCE_CONNECTIONS": "off"}).balance_connections is False
    assert error_of({"FMNIST_BALANCE_CONNECTIONS": "maybe"}) == (
        "FMNIST_BALANCE_CONNECTIONS='maybe': Input should be a valid boolean, unable to "
        "interpret input"
    )


def test_default_model_must_be_among_the_listed_models() -> None:
    assert error_of({"FMNIST_MODELS": "baseline, deeper", "FMNIST_DEFAULT_MODEL": "x"}) == (
        "FMNIST_DEFAULT_MODEL='x' is not in FMNIST_MODELS (baseline, deeper)"
    )
    ok = load_settings({"FMNIST_MODELS": "baseline,deeper", "FMNIST_DEFAULT_MODEL": "deeper"})
    assert (ok.models, ok.default_model) == (("baseline", "deeper"), "deeper")
    # Without FMNIST_MODELS the default is checked against what is served (choose_default).
    assert load_settings({"FMNIST_DEFAULT_MODEL": "x"}).default_model == "x"
    assert load_settings({"FMNIST_MODELS": "a"}).default_model is None


def test_choose_default() -> None:
    assert load_settings({}).choose_default(("deeper", "baseline"), "src") == "deeper"
    chosen = load_settings({"FMNIST_DEFAULT_MODEL": "baseline"})
    assert chosen.choose_default(("deeper", "baseline"), "src") == "baseline"
    with pytest.raises(SettingsError) as caught:
        chosen.choose_default(("deeper", "improved"), "FMNIST_MODEL_DIR=/m")
    assert str(caught.value) == (
        "FMNIST_DEFAULT_MODEL='baseline' is not served: FMNIST_MODEL_DIR=/m provides "
        "deeper, improved (pick one of those, or add the model there)"
    )


def test_retired_variable_is_a_start_up_error_unless_blank() -> None:
    assert list(RETIRED) == ["BATCHING_MAX_LATENCY_MS"]
    assert error_of({"FMNIST_BATCHING_MAX_LATENCY_MS": "5"}) == (
        "FMNIST_BATCHING_MAX_LATENCY_MS is no longer read: the batcher keeps no latency "
        "budget any more; use FMNIST_BATCHING_MAX_WAIT_MS (how long a request may wait for "
        "others) and FMNIST_BATCHING_MAX_QUEUE (how many may wait before 503)"
    )
    assert load_settings({"FMNIST_BATCHING_MAX_LATENCY_MS": " "}).workers == 2


def test_only_our_known_variables_are_read() -> None:
    s = load_settings(
        {
            "FMNIST_DATA_DIR": "/data",  # another component's variable
            "WORKERS": "9",  # no prefix
            "XFMNIST_WORKERS": "9",
            "FMNIST_workers": "3",  # the name after the prefix is case-insensitive
        }
    )
    assert s.workers == 3
    assert load_settings({"MYAPP__WORKERS": "9"}).workers == 2  # a prefix of the same length


def test_several_bad_values_make_one_line_naming_each() -> None:
    assert error_of({"FMNIST_WORKERS": "two", "FMNIST_MAX_BODY_BYTES": "0"}) == (
        "FMNIST_WORKERS='two': Input should be a valid integer, unable to parse string as an "
        "integer; FMNIST_MAX_BODY_BYTES='0': Input should be greater than or equal to 1024"
    )


def test_describe_error_names_the_variable_or_the_whole_settings() -> None:
    with pytest.raises(ValidationError) as caught:
        ServiceSettings.model_validate({"workers": "x", "max_batch_size": 0})
    assert describe_error(caught.value) == (
        "FMNIST_WORKERS='x': Input should be a valid integer, unable to parse string as an "
        "integer; FMNIST_MAX_BATCH_SIZE=0: Input should be greater than or equal to 1"
    )
    with pytest.raises(ValidationError) as caught:
        ServiceSettings.model_validate({"models": "a", "default_model": "b"})
    assert describe_error(caught.value) == "FMNIST_DEFAULT_MODEL='b' is not in FMNIST_MODELS (a)"


def test_settings_are_frozen() -> None:
    s = load_settings({})
    with pytest.raises(ValidationError):
        s.workers = 3  # type: ignore[misc]
    assert settings_mod.SettingsError.__mro__[1] is ValueError


def test_low_confidence_is_a_probability_above_zero() -> None:
    assert load_settings({"FMNIST_LOW_CONFIDENCE": "0.35"}).low_confidence == 0.35
    assert load_settings({"FMNIST_LOW_CONFIDENCE": "1"}).low_confidence == 1.0
    assert error_of({"FMNIST_LOW_CONFIDENCE": "0"}) == (
        "FMNIST_LOW_CONFIDENCE='0': Input should be greater than 0"
    )
    assert error_of({"FMNIST_LOW_CONFIDENCE": "1.5"}) == (
        "FMNIST_LOW_CONFIDENCE='1.5': Input should be less than or equal to 1"
    )
    assert settings_mod.DEFAULT_LOW_CONFIDENCE == 0.5


def test_a_given_environment_is_the_whole_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FMNIST_WORKERS", "7")
    monkeypatch.setenv("FMNIST_DEFAULT_MODEL", "deeper")
    given = load_settings({"FMNIST_MAX_BATCH_SIZE": "8"})
    assert (given.workers, given.default_model, given.max_batch_size) == (2, None, 8)
    assert isinstance(given, ServiceSettings)
    assert load_settings().workers == 7  # the process environment when none is given
