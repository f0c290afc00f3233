"""The torch-free dataset core: IDX parsing, discovery, checksums, the split."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fmnist.dataset import (
    FILES,
    DatasetError,
    find_data_dir,
    load_raw,
    load_test_set,
    parse_idx,
    train_val_split,
    write_idx,
)


def test_idx_round_trip(tmp_path: Path) -> None:
    array = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    path = write_idx(tmp_path / "x-idx3-ubyte", array)
    with gzip.open(path, "rb") as f:
        np.testing.assert_array_equal(parse_idx(f.read()), array)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x00\x00\x0d\x01\x00\x00\x00\x01\x00", "bad magic"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02", "announces 5 bytes"),
        (b"\x00\x00\x08\x03\x00", "truncated"),
    ],
)
def test_parse_idx_rejects_bad_files(raw: bytes, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        parse_idx(raw)


def test_explicit_folder_wins_and_checksum_is_verified(synthetic_data_dir: Path) -> None:
    assert find_data_dir(synthetic_data_dir) == synthetic_data_dir
    # Synthetic files are not the real ones: verification must catch that.
    with pytest.raises(DatasetError, match="corrupt: md5"):
        load_raw(synthetic_data_dir)
    split = load_test_set(synthetic_data_dir, verify=False)
    assert split.images.shape == (200, 28, 28) and split.images.dtype == np.uint8
    assert split.labels.tolist()[:12] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]


def test_env_var_is_used(synthetic_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FMNIST_DATA_DIR", str(synthetic_data_dir))
    assert find_data_dir() == synthetic_data_dir


def test_missing_dataset_says_how_to_get_it(tmp_path: Path) -> None:
    (tmp_path / FILES["train_images"][0]).write_bytes(b"")
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist") as exc:
        find_data_dir(tmp_path)
    assert "train-labels-idx1-ubyte" in str(exc.value)


def test_truncated_gzip_is_a_dataset_error(synthetic_data_dir: Path, tmp_path: Path) -> None:
    for stem, _ in FILES.values():
        data = (synthetic_data_dir / f"{stem}.gz").read_bytes()
        (tmp_path / f"{stem}.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="cannot read"):
        load_raw(tmp_path)


def test_split_is_seeded_disjoint_and_complete() -> None:
    train, val = train_val_split(60_000, 0.1, seed=42)
    assert (len(train), len(val)) == (54_000, 6_000)
    assert np.intersect1d(train, val).size == 0
    assert np.union1d(train, val).size == 60_000
    again, _ = train_val_split(60_000, 0.1, seed=42)
    other, _ = train_val_split(60_000, 0.1, seed=7)
    assert np.array_equal(train, again) and not np.array_equal(train, other)


@pytest.mark.parametrize("command", ["training.train", "training.export", "training.report"])
def test_cli_missing_dataset_is_one_line_error(tmp_path: Path, command: str) -> None:
    args = ["--data-dir", str(tmp_path)]
    if command != "training.train":
        args += ["--out" if command == "training.export" else "--artifacts", str(tmp_path)]
    result = subprocess.run(
        [sys.executable, "-m", command, *args], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ")
    assert (
        "apt-get install dataset-fashion-mnist" in result.stderr or "no finished" in result.stderr
    )


def test_nothing_anywhere_lists_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fmnist.dataset as ds

    monkeypatch.delenv("FMNIST_DATA_DIR", raising=False)
    monkeypatch.setattr(ds, "DEBIAN_DIR", tmp_path / "debian")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DatasetError, match="not found") as exc:
        find_data_dir()
    assert str(tmp_path / "debian") in str(exc.value)
    assert "apt-get install dataset-fashion-mnist" in str(exc.value)
