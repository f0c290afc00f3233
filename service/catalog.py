"""Which models the service serves: the exported files it is given, named by their metadata.

The service knows no model names. A model is served when its ONNX file carries the
project's metadata (``model_name``, written by fmnist-export), under that name:

* ``FMNIST_MODEL_DIR`` set: every ``*.onnx`` in that folder that carries it (files that
  do not are skipped with a warning), each file a version of its name (the version is the
  first 12 hex digits of its sha256);
* unset: every ``fmnist-<name>`` model in the BentoML model store (imported with
  ``python -m service.import_models``): the versions its aliases name
  (service/versions.py), and its latest version when no alias names a production one.

``FMNIST_MODELS`` (comma-separated) restricts and orders the names and makes each one
required; otherwise they are listed by name. Finding no model, the same file twice, or
a listed model that is missing is a :class:`CatalogError` with one line that says what to
do.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmnist.contract import (
    KEY_REFERENCE,
    ONNX_SUFFIX,
    PROJECT_MARKER_KEY,
    ReferenceDistribution,
    file_sha256,
)
from fmnist.dataset import CLASS_NAMES
from service.onnx_file import NotAnOnnxFile, read_metadata
from service.versions import PRODUCTION, AliasTable, file_version

log = logging.getLogger(__name__)

STORE_PREFIX = "fmnist-"  # BentoML model store: fmnist-<name>
STORE_FILENAME = "model.onnx"
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
IMPORT_HINT = "python -m service.import_models --onnx-dir artifacts/onnx"


class CatalogError(RuntimeError):
    """The served models cannot be determined; the message is one line."""


@dataclass(frozen=True)
class ModelSource:
    """Where one served model comes from."""

    name: str
    path: Path | None  # the ONNX file (None for a store model until BentoML resolves it)
    store_tag: str | None = None  # "fmnist-<name>:<version>" for store models
    version: str = ""  # the store's version, or the file's sha256[:12]


def store_name(model: str) -> str:
    return f"{STORE_PREFIX}{model}"


def check_name(name: str, where: str) -> str:
    if not NAME_PATTERN.match(name):
        raise CatalogError(
            f"{where} names its model {name!r}; expected lowercase letters, digits, '_', '.', "
            "'-' (at most 64), as fmnist-export writes"
        )
    return name


def model_name_of(path: Path) -> str | None:
    """The project's model name recorded in an ONNX file, or None for a foreign file."""
    try:
        meta = read_metadata(path)
    except NotAnOnnxFile as exc:
        raise CatalogError(str(exc) + " (expected a file written by fmnist-export)") from None
    except OSError as exc:
        raise CatalogError(f"{path} cannot be read ({exc.strerror})") from None
    name = meta.get(PROJECT_MARKER_KEY)
    return check_name(name, str(path)) if name else None


def _select(
    found: dict[str, list[ModelSource]], wanted: tuple[str, ...] | None, source: str
) -> list[ModelSource]:
    if wanted:
        missing = [n for n in wanted if n not in found]
        if missing:
            raise CatalogError(
                f"FMNIST_MODELS lists {', '.join(missing)} but {source} provides "
                f"{', '.join(sorted(found)) or 'no model'}"
            )
        return [s for n in wanted for s in found[n]]
    return [s for n in sorted(found) for s in found[n]]


def versions_of(sources: list[ModelSource]) -> dict[str, tuple[str, ...]]:
    """Name → its versions, in the sources' order."""
    out: dict[str, tuple[str, ...]] = {}
    for source in sources:
        out[source.name] = (*out.get(source.name, ()), source.version)
    return out


def models_in_dir(folder: Path, wanted: tuple[str, ...] | None = None) -> list[ModelSource]:
    """The project's ONNX files in ``folder`` (see the module docstring)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CatalogError(
            f"FMNIST_MODEL_DIR={folder} is not a folder (expected the folder fmnist-export "
            "writes, e.g. artifacts/onnx)"
        )
    found: dict[str, list[ModelSource]] = {}
    for path in sorted(folder.glob(f"*{ONNX_SUFFIX}")):
        name = model_name_of(path)
        if name is None:
            log.warning("%s has no %r metadata: not one of ours, skipped", path, PROJECT_MARKER_KEY)
            continue
        version = file_version(file_sha256(path))
        same = [s for s in found.get(name, []) if s.version == version]
        if same:
            raise CatalogError(
                f"{same[0].path} and {path} are the same file: version {version} of model "
                f"{name!r} (expected each version once)"
            )
        found.setdefault(name, []).append(ModelSource(name, path, None, version))
    if not found:
        raise CatalogError(
            f"FMNIST_MODEL_DIR={folder} holds no exported model (expected <name>.onnx files "
            "written by fmnist-export, e.g. artifacts/onnx)"
        )
    return _select(found, wanted, f"FMNIST_MODEL_DIR={folder}")


def models_in_store(
    wanted: tuple[str, ...] | None = None, aliases: AliasTable | None = None
) -> list[ModelSource]:
    """The ``fmnist-<name>`` versions of the BentoML model store that are served: those
    ``aliases`` name, and the latest where none is named ``production``."""
    import bentoml

    found: dict[str, list[ModelSource]] = {}
    for model in bentoml.models.list():
        if not model.tag.name.startswith(STORE_PREFIX):
            continue
        name = check_name(model.tag.name[len(STORE_PREFIX) :], str(model.tag))
        if name in found:
            continue
        named = dict((aliases or {}).get(name, {}))
        if PRODUCTION not in named:
            named["latest"] = str(bentoml.models.get(f"{model.tag.name}:latest").tag.version)
        versions = list(dict.fromkeys(named.values()))
        found[name] = []
        for version in versions:
            try:
                stored = bentoml.models.get(f"{model.tag.name}:{version}")
            except bentoml.exceptions.NotFound:
                which = [a for a, v in named.items() if v == version]
                raise CatalogError(
                    f"{name}@{which[0]} names version {version}, which the BentoML model store "
                    f"does not hold (`bentoml models list {model.tag.name}` shows its versions)"
                ) from None
            found[name].append(ModelSource(name, None, str(stored.tag), version))
    if not found:
        raise CatalogError(
            "the BentoML model store holds no fmnist-* model: run "
            f"`{IMPORT_HINT}` first, or set FMNIST_MODEL_DIR to the folder of ONNX files"
        )
    return _select(found, wanted, "the BentoML model store")


def reference_of(metadata: Mapping[str, Any], where: str) -> ReferenceDistribution | None:
    """A model's drift reference (its test-set answers, written by fmnist-export), or None
    for a file exported before it was recorded; a malformed one is a CatalogError."""
    value = metadata.get(KEY_REFERENCE)
    if value is None:
        return None
    try:
        return ReferenceDistribution.from_json(value, CLASS_NAMES)
    except ValueError as exc:
        raise CatalogError(f"{where}: {exc} (re-export the model with fmnist-export)") from None


def missing_reference_warning(model: str, where: str) -> str:
    return (
        f"model {model} ({where}) carries no {KEY_REFERENCE!r} metadata: no "
        "fmnist_reference_* gauges and no drift score for it (re-export it with fmnist-export)"
    )
