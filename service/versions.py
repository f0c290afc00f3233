"""Model versions and the aliases that pick one: what ``model=baseline@candidate`` means.

A served model is a name (``baseline``) with one or more versions: the BentoML store's
version of ``fmnist-<name>``, or, for ``FMNIST_MODEL_DIR``, the first 12 hex digits of the
file's sha256. A request names a model in one of three ways:

* ``baseline``: the version the alias ``production`` points to;
* ``baseline@candidate`` (or ``@production``, ``@previous``): the version of that alias;
* ``baseline@<version>``: that version.

The aliases live in one JSON file a person can read and a deploy can set (see
:func:`aliases_path`), one object per model name::

    {"baseline": {"production": "3f2a9c1d0b7e", "candidate": "9b1c2d3e4f50"}}

``production`` may be left out when a name has a single version (it is that one).
``fmnist-promote`` writes the file (write, then rename: a reader never sees half of it);
every worker reads it again when it changes (service/lifecycle.py) and switches all at
once, keeping the old aliases when the new ones name a version it cannot load.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import TypeAdapter, ValidationError

from service.validation import InputError

PRODUCTION, CANDIDATE, PREVIOUS = "production", "candidate", "previous"
ALIASES = (PRODUCTION, CANDIDATE, PREVIOUS)
ALIASES_FILENAME = "aliases.json"
STORE_ALIASES_FILENAME = "fmnist-aliases.json"
VERSION_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
VERSION_DIGITS = 12  # a file's version: its sha256's first 12 hex digits

Alias = Literal["production", "candidate", "previous"]
AliasTable = dict[str, dict[str, str]]  # model name -> alias -> version
_FILE_SHAPE: TypeAdapter[dict[str, dict[Alias, str]]] = TypeAdapter(dict[str, dict[Alias, str]])


class AliasError(ValueError):
    """The aliases cannot be used: the message is one line that says what and where."""


def file_version(sha256: str) -> str:
    return sha256[:VERSION_DIGITS]


def split_reference(raw: str) -> tuple[str, str | None]:
    """``"baseline@candidate"`` → ``("baseline", "candidate")``; no ``@`` → ``(raw, None)``."""
    name, sep, selector = raw.partition("@")
    return name, (selector if sep else None)


def aliases_path(explicit: Path | None, model_dir: Path | None) -> Path:
    """FMNIST_ALIASES_FILE, else ``aliases.json`` beside the models: in FMNIST_MODEL_DIR, or
    ``fmnist-aliases.json`` in BentoML's home (``$BENTOML_HOME``, default ``~/bentoml``)."""
    if explicit is not None:
        return explicit
    if model_dir is not None:
        return model_dir / ALIASES_FILENAME
    home = os.environ.get("BENTOML_HOME", "").strip() or str(Path.home() / "bentoml")
    return Path(home) / STORE_ALIASES_FILENAME


def parse_aliases(text: str, where: str) -> AliasTable:
    """The file's JSON, checked: model names to ``{alias: version}``."""
    try:
        table = _FILE_SHAPE.validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        at = ".".join(str(p) for p in first["loc"])
        raise AliasError(
            f"{where} is not an aliases file ({at + ': ' if at else ''}{first['msg']}); "
            f'expected {{"<model>": {{"production": "<version>", "candidate": "<version>"}}}} '
            f"with aliases {', '.join(ALIASES)}"
        ) from None
    for name, aliases in table.items():
        for alias, version in aliases.items():
            if not VERSION_PATTERN.match(version):
                raise AliasError(
                    f"{where}: {name}@{alias} is {version!r}; expected a version (lowercase "
                    "letters, digits, '_', '.', '-')"
                )
    return {name: {str(a): v for a, v in aliases.items()} for name, aliases in table.items()}


def read_aliases(path: Path) -> AliasTable:
    """The aliases in ``path``; a missing file is no aliases."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise AliasError(f"{path} cannot be read ({exc.strerror})") from None
    return parse_aliases(text, str(path))


def write_aliases(path: Path, table: Mapping[str, Mapping[str, str]]) -> None:
    """Replace ``path`` by ``table`` in one step: a reader sees the old file or the new one."""
    text = json.dumps({n: dict(sorted(a.items())) for n, a in sorted(table.items())}, indent=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".aliases-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_aliases(
    table: AliasTable, versions: Mapping[str, tuple[str, ...]], where: str
) -> dict[str, dict[str, str]]:
    """Every alias of every served name resolved, ``production`` filled in where a name has
    one version; an alias naming a version that is not there is an :class:`AliasError`."""
    resolved: dict[str, dict[str, str]] = {}
    for name, available in versions.items():
        aliases = dict(table.get(name, {}))
        for alias, version in aliases.items():
            if version not in available:
                raise AliasError(
                    f"{where}: {name}@{alias} names version {version}, which is not there "
                    f"(versions of {name}: {', '.join(available)})"
                )
        if PRODUCTION not in aliases:
            if len(available) != 1:
                raise AliasError(
                    f"{name} has {len(available)} versions ({', '.join(available)}) and no "
                    f"production alias in {where}; expected one, e.g. `fmnist-promote "
                    f"{name}@{available[0]}`"
                )
            aliases[PRODUCTION] = available[0]
        resolved[name] = aliases
    return resolved


@dataclass(frozen=True)
class Target:
    """The version a request is answered by, and the alias it was reached through."""

    name: str
    version: str
    alias: str | None  # production, candidate, previous; None for an explicit version

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.version)


@dataclass(frozen=True)
class Routing:
    """One worker's view of what is served: replaced as a whole, never changed in place, so
    that a request resolves against the old aliases or the new ones, never a mix."""

    versions: dict[str, tuple[str, ...]]  # name -> its loaded versions
    aliases: dict[str, dict[str, str]]  # name -> alias -> version (production always there)
    default: str  # the name a request that names none gets
    generation: int = 0  # how many times the aliases were applied in this worker

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.versions)

    def resolve(self, raw: object) -> Target:
        """A request's ``model`` value → its target; anything not served is a 404."""
        if raw is None or (isinstance(raw, str) and raw.strip() == ""):
            raw = self.default
        if not isinstance(raw, str):
            raise self._unknown(raw)
        name, selector = split_reference(raw)
        aliases = self.aliases.get(name)
        if aliases is None:
            raise self._unknown(raw)
        if selector is None:
            return Target(name, aliases[PRODUCTION], PRODUCTION)
        if selector in aliases:
            return Target(name, aliases[selector], selector)
        if selector in self.versions[name]:
            return Target(name, selector, None)
        raise InputError(
            404,
            "unknown_model",
            f"model {raw!r} is not served (expected {name}, or {name}@ one of "
            f"{', '.join([*aliases, *self.versions[name]])})",
        )

    def candidate_of(self, name: str) -> str | None:
        aliases = self.aliases.get(name, {})
        candidate = aliases.get(CANDIDATE)
        return candidate if candidate is not None and candidate != aliases[PRODUCTION] else None

    def aliases_of(self, name: str, version: str) -> list[str]:
        return [a for a in ALIASES if self.aliases.get(name, {}).get(a) == version]

    def _unknown(self, raw: object) -> InputError:
        return InputError(
            404,
            "unknown_model",
            f"model {raw!r} is not served (expected one of {', '.join(self.names)}, "
            "optionally with @production, @candidate or @<version>)",
        )
