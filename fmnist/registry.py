"""The model registry: every model the project trains, torch-free.

One entry per model. Training maps each name to its ``nn.Module`` class and its recipe
(``training.models.ARCHITECTURES``, ``training.recipe.RECIPES``, keyed by
:attr:`ModelSpec.recipe`); evaluation and the report ask :func:`study_models` which models
the study reports on; load tests and benchmarks take their names from here. The service
knows no names: it serves the exported files it is given (their metadata names them).

Adding a model: one ``nn.Module`` class in ``training/models.py``, one entry here, one
recipe in ``training/recipe.py`` (see the README's layout section).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    """What every package may know about a model without importing torch."""

    name: str
    in_study: bool  # trained and reported by the study (held against its numbers)
    recipe: str  # the name of its training recipe (training.recipe.RECIPES)
    summary: str  # one line for listings and --help


REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add a model; a name registered twice is a programming error."""
    if spec.name in REGISTRY:
        raise ValueError(f"model {spec.name!r} is already registered")
    REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a model (tests that register an extra one clean up with this)."""
    REGISTRY.pop(name, None)


register(ModelSpec("baseline", True, "study", "conv32-pool-conv64-pool-fc128 (the study's)"))
register(ModelSpec("deeper", True, "study", "baseline + conv128 + fc256 (the study's)"))
register(ModelSpec("improved", False, "improved", "BN VGG-style CNN, our recipe beyond the study"))


def model_names() -> tuple[str, ...]:
    """Every registered model, in registration order."""
    return tuple(REGISTRY)


def study_models() -> tuple[str, ...]:
    """The models the study trained and reports on."""
    return tuple(name for name, spec in REGISTRY.items() if spec.in_study)


def beyond_study() -> tuple[str, ...]:
    """The models beyond the study (our own recipes), in registration order."""
    return tuple(name for name, spec in REGISTRY.items() if not spec.in_study)


def get_spec(name: str) -> ModelSpec:
    """The registered model ``name``; a ValueError that lists the known names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(REGISTRY)}") from None
