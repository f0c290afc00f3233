"""Move a model's aliases: promote a version, name a candidate, roll back. One command each.

    fmnist-promote baseline@9b1c2d3e4f50                    # production (old one: previous)
    fmnist-promote baseline@9b1c2d3e4f50 --alias candidate  # shadowed and gated
    fmnist-rollback baseline                                # production <-> previous
    fmnist-promote --show                                   # every version and alias

They write the aliases file (service/versions.py) the service reads, in one rename, after
checking that the version is there (in ``FMNIST_MODEL_DIR``, or in the BentoML model
store); every worker of a running service switches within ``FMNIST_ALIASES_POLL_S``
(service/lifecycle.py), without a restart and without losing a request. Promotion is a
deploy action: whoever can write this file (or, on Kubernetes, its ConfigMap) can promote;
no HTTP route can. Each change is appended to ``<aliases file>.log`` (time, user, host,
before, after), and each worker logs what it applied. The folder and the file are the
service's: ``--model-dir`` and ``--aliases-file`` default to ``FMNIST_MODEL_DIR`` and
``FMNIST_ALIASES_FILE``.

Exit status: 0 done (or nothing to change), 2 refused (a version or a previous version
that is not there, a malformed aliases file), with one line that says why.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import os
import socket
import sys
from pathlib import Path

from service.catalog import STORE_PREFIX, CatalogError, models_in_dir, store_name, versions_of
from service.versions import (
    ALIASES,
    CANDIDATE,
    PREVIOUS,
    PRODUCTION,
    AliasError,
    AliasTable,
    aliases_path,
    read_aliases,
    split_reference,
    write_aliases,
)


class PromoteError(RuntimeError):
    """The change is refused; the message is one line."""


def available_versions(model_dir: Path | None, name: str) -> tuple[str, ...]:
    """The versions of ``name`` that a service on the same models could serve."""
    if model_dir is not None:
        versions = versions_of(models_in_dir(model_dir)).get(name, ())
        where = f"FMNIST_MODEL_DIR={model_dir}"
    else:
        import bentoml

        versions = tuple(str(m.tag.version) for m in bentoml.models.list(store_name(name)))
        where = "the BentoML model store"
    if not versions:
        raise PromoteError(f"{where} holds no version of model {name!r}")
    return versions


def model_names(model_dir: Path | None) -> list[str]:
    """Every model name in the folder, or in the model store (``fmnist-<name>``)."""
    if model_dir is not None:
        return list(versions_of(models_in_dir(model_dir)))
    import bentoml

    tags = {str(m.tag.name) for m in bentoml.models.list()}
    return sorted(t[len(STORE_PREFIX) :] for t in tags if t.startswith(STORE_PREFIX))


def pick_version(wanted: str, versions: tuple[str, ...], name: str) -> str:
    """``wanted`` itself, or the one version it is a prefix of (at least 6 characters)."""
    if wanted in versions:
        return wanted
    matches = [v for v in versions if len(wanted) >= 6 and v.startswith(wanted)]
    if len(matches) == 1:
        return matches[0]
    raise PromoteError(f"{name} has no version {wanted!r} (its versions: {', '.join(versions)})")


def promote(table: AliasTable, name: str, version: str, alias: str = PRODUCTION) -> AliasTable:
    """The aliases after ``name@version`` becomes ``alias``. Promoting to production keeps
    the version it replaces as ``previous`` and ends a candidacy of the promoted version."""
    new = {n: dict(a) for n, a in table.items()}
    aliases = new.setdefault(name, {})
    if alias == PRODUCTION:
        current = aliases.get(PRODUCTION)
        if current is not None and current != version:
            aliases[PREVIOUS] = current
        aliases[PRODUCTION] = version
        if aliases.get(CANDIDATE) == version:
            del aliases[CANDIDATE]
    else:
        aliases[alias] = version
    return new


def rollback(table: AliasTable, name: str) -> AliasTable:
    """Production and previous swap: the version rolled back from becomes ``previous``."""
    aliases = table.get(name, {})
    if PREVIOUS not in aliases or PRODUCTION not in aliases:
        raise PromoteError(
            f"{name} has no previous production version to roll back to (its aliases: "
            f"{aliases or 'none'})"
        )
    new = {n: dict(a) for n, a in table.items()}
    new[name][PRODUCTION], new[name][PREVIOUS] = aliases[PREVIOUS], aliases[PRODUCTION]
    return new


def audit_path(path: Path) -> Path:
    return path.with_name(path.name + ".log")


def audit(path: Path, prog: str, name: str, before: dict[str, str], after: dict[str, str]) -> None:
    """One JSON line per change beside the aliases file: when, who, from where, what."""
    record = {
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "user": getpass.getuser(),
        "host": socket.gethostname(),
        "command": prog,
        "model": name,
        "before": before,
        "after": after,
    }
    with open(audit_path(path), "a", encoding="utf-8") as log:
        log.write(json.dumps(record) + "\n")


def _common(p: argparse.ArgumentParser) -> None:
    env_dir = os.environ.get("FMNIST_MODEL_DIR", "").strip()
    env_file = os.environ.get("FMNIST_ALIASES_FILE", "").strip()
    p.add_argument(
        "--model-dir",
        type=Path,
        default=Path(env_dir) if env_dir else None,
        help="the service's folder of ONNX files (default: $FMNIST_MODEL_DIR; unset: the "
        "BentoML model store)",
    )
    p.add_argument(
        "--aliases-file",
        type=Path,
        default=Path(env_file) if env_file else None,
        help="the aliases file (default: $FMNIST_ALIASES_FILE, else aliases.json in the "
        "model folder, else fmnist-aliases.json in $BENTOML_HOME)",
    )


def _show(path: Path, model_dir: Path | None, table: AliasTable) -> None:
    names = sorted(set(table) | set(model_names(model_dir)))
    print(f"aliases file: {path}")
    for name in names:
        try:
            versions = available_versions(model_dir, name)
        except PromoteError:
            versions = ()
        for version in versions:
            named = [a for a in ALIASES if table.get(name, {}).get(a) == version]
            print(f"  {name}@{version}  {' '.join(named)}")


def _run(argv: list[str] | None, prog: str) -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    if prog == "fmnist-rollback":
        p.add_argument("name", help="the model whose production version goes back")
    else:
        p.add_argument("reference", nargs="?", help="NAME@VERSION (a version, or a prefix of one)")
        p.add_argument(
            "--alias",
            choices=(PRODUCTION, CANDIDATE),
            default=PRODUCTION,
            help="the alias to point at the version",
        )
        p.add_argument(
            "--show", action="store_true", help="list versions and aliases; change nothing"
        )
    _common(p)
    a = p.parse_args(argv)
    path = aliases_path(a.aliases_file, a.model_dir)
    try:
        table = read_aliases(path)
        if prog == "fmnist-rollback":
            name = a.name
            new = rollback(table, name)
        else:
            if a.show or not a.reference:
                _show(path, a.model_dir, table)
                return 0
            name, wanted = split_reference(a.reference)
            if not wanted:
                raise PromoteError(f"{a.reference!r} names no version; expected NAME@VERSION")
            version = pick_version(wanted, available_versions(a.model_dir, name), name)
            new = promote(table, name, version, a.alias)
        if prog == "fmnist-rollback":
            # the version rolled back to must still be there
            pick_version(new[name][PRODUCTION], available_versions(a.model_dir, name), name)
    except (PromoteError, AliasError, CatalogError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    before, after = table.get(name, {}), new.get(name, {})
    if before == after:
        print(f"{prog}: {name}: no change ({after})")
        return 0
    write_aliases(path, new)
    audit(path, prog, name, before, after)
    moved = ", ".join(
        f"{alias} {before.get(alias, '-')} -> {after.get(alias, '-')}"
        for alias in ALIASES
        if before.get(alias) != after.get(alias)
    )
    print(f"{prog}: {name}: {moved} ({path}; every worker switches within FMNIST_ALIASES_POLL_S)")
    return 0


def main(argv: list[str] | None = None) -> int:
    return _run(argv, "fmnist-promote")


def rollback_main(argv: list[str] | None = None) -> int:
    return _run(argv, "fmnist-rollback")


if __name__ == "__main__":
    sys.exit(main())
