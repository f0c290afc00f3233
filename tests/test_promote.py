"""fmnist-promote / fmnist-rollback: the aliases they write, and what they refuse."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fmnist.contract import file_sha256
from service.promote import audit_path, main, promote, rollback, rollback_main
from service.versions import read_aliases


def test_promotion_keeps_the_replaced_version_as_previous_and_ends_the_candidacy() -> None:
    table = {"baseline": {"production": "a" * 12, "candidate": "b" * 12}}
    after = promote(table, "baseline", "b" * 12)
    assert after == {"baseline": {"production": "b" * 12, "previous": "a" * 12}}
    assert table["baseline"]["production"] == "a" * 12  # the input is not changed
    assert rollback(after, "baseline") == {
        "baseline": {"production": "a" * 12, "previous": "b" * 12}
    }
    assert promote({}, "baseline", "c" * 12, "candidate") == {"baseline": {"candidate": "c" * 12}}


@pytest.fixture
def two_versions(onnx_models: dict[str, Path], tmp_path: Path) -> tuple[Path, str, str]:
    """A model folder with baseline and deeper, one version each."""
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy2(onnx_models["baseline"], folder / "baseline.onnx")
    shutil.copy2(onnx_models["deeper"], folder / "deeper.onnx")
    return (
        folder,
        file_sha256(folder / "baseline.onnx")[:12],
        file_sha256(folder / "deeper.onnx")[:12],
    )


def test_the_commands_write_the_file_and_an_audit_line(
    two_versions: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, baseline, _ = two_versions
    assert main([f"baseline@{baseline[:8]}", "--model-dir", str(folder)]) == 0  # a prefix
    assert read_aliases(folder / "aliases.json") == {"baseline": {"production": baseline}}
    assert "production - -> " + baseline in capsys.readouterr().out
    assert main([f"baseline@{baseline}", "--model-dir", str(folder)]) == 0
    assert "no change" in capsys.readouterr().out
    lines = audit_path(folder / "aliases.json").read_text().splitlines()
    assert len(lines) == 1  # no change, no line
    record = json.loads(lines[0])
    assert record["after"] == {"production": baseline} and record["user"] and record["host"]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["baseline@ffffffffffff"], "baseline has no version 'ffffffffffff'"),
        (["baseline@abc"], "has no version 'abc'"),  # too short to be a prefix
        (["nope@ffffffffffff"], "holds no version of model 'nope'"),
        (["baseline"], "names no version"),
    ],
)
def test_promote_refuses_what_is_not_there(
    two_versions: tuple[Path, str, str],
    argv: list[str],
    words: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder, _, _ = two_versions
    assert main([*argv, "--model-dir", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fmnist-promote: error: ") and words in err and err.count("\n") == 1
    assert not (folder / "aliases.json").exists()


def test_rollback_without_a_previous_version_is_refused(
    two_versions: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, baseline, _ = two_versions
    assert rollback_main(["baseline", "--model-dir", str(folder)]) == 2
    assert "no previous production version" in capsys.readouterr().err


def test_a_malformed_aliases_file_is_refused_and_left_alone(
    two_versions: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, baseline, _ = two_versions
    (folder / "aliases.json").write_text("{broken")
    assert main([f"baseline@{baseline}", "--model-dir", str(folder)]) == 2
    assert "not an aliases file" in capsys.readouterr().err
    assert (folder / "aliases.json").read_text() == "{broken"


def test_show_lists_versions_and_aliases(
    two_versions: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, baseline, deeper = two_versions
    main([f"baseline@{baseline}", "--model-dir", str(folder)])
    capsys.readouterr()
    assert main(["--show", "--model-dir", str(folder)]) == 0
    out = capsys.readouterr().out
    assert f"baseline@{baseline}  production" in out and f"deeper@{deeper}" in out
