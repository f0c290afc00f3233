"""The torch-free dataset core: IDX parsing, discovery, checksums, the split."""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fmnist.dataset import (
    DEBIAN_DIR,
    FILES,
    MIRRORS,
    DatasetError,
    cache_dir,
    candidate_dirs,
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
    assert str(exc.value).startswith(
        f"{tmp_path} lacks train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
        "t10k-labels-idx1-ubyte; "
    )


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
    assert str(exc.value).startswith(
        f"Fashion-MNIST not found (looked in {tmp_path / 'debian'}, {tmp_path / 'cache'}/fmnist); "
    )
    assert "apt-get install dataset-fashion-mnist" in str(exc.value)


# --- discovery, download, checksums and shapes, case by case ---------------------------


def test_cache_dir_follows_xdg_then_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "fmnist"
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "fmnist"


def test_candidate_dirs_in_discovery_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FMNIST_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    cache = tmp_path / "xdg" / "fmnist"
    assert candidate_dirs(tmp_path / "cli") == [
        tmp_path / "cli",
        tmp_path / "env",
        DEBIAN_DIR,
        cache,
    ]
    monkeypatch.setenv("FMNIST_DATA_DIR", "")
    assert candidate_dirs() == [DEBIAN_DIR, cache]


def test_the_first_candidate_holding_all_files_wins(
    synthetic_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fmnist.dataset as ds

    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    write_idx(incomplete / FILES["test_labels"][0], np.zeros(3, dtype=np.uint8))
    monkeypatch.setenv("FMNIST_DATA_DIR", str(incomplete))
    monkeypatch.setattr(ds, "DEBIAN_DIR", synthetic_data_dir)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert find_data_dir() == synthetic_data_dir


def _copy_uncompressed(source: Path, dest: Path) -> Path:
    dest.mkdir()
    for stem, _ in FILES.values():
        with gzip.open(source / f"{stem}.gz", "rb") as f:
            (dest / stem).write_bytes(f.read())
    return dest


def test_uncompressed_files_are_read_and_preferred(
    synthetic_data_dir: Path, tmp_path: Path
) -> None:
    plain = _copy_uncompressed(synthetic_data_dir, tmp_path / "plain")
    gz = load_test_set(synthetic_data_dir, verify=False)
    # A broken .gz beside each plain file: the plain file is the one read.
    for stem, _ in FILES.values():
        (plain / f"{stem}.gz").write_bytes(b"not gzip")
    raw = load_test_set(plain, verify=False)
    np.testing.assert_array_equal(raw.images, gz.images)
    np.testing.assert_array_equal(raw.labels, gz.labels)


def test_write_idx_plain_and_gzipped(tmp_path: Path) -> None:
    array = np.arange(6, dtype=np.uint8).reshape(2, 3)
    plain = write_idx(tmp_path / "a" / "b" / "a-idx2-ubyte", array, compress=False)
    assert plain == tmp_path / "a" / "b" / "a-idx2-ubyte"
    assert plain.read_bytes() == bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 0, 1, 2, 3, 4, 5])
    # Any integer array is written as unsigned bytes, one per value.
    wide = write_idx(tmp_path / "w-idx2-ubyte", array.astype(np.int64), compress=False)
    assert wide.read_bytes() == plain.read_bytes()
    gz = write_idx(tmp_path / "b-idx2-ubyte.gz", array)
    assert gz.name == "b-idx2-ubyte.gz"
    assert gzip.decompress(gz.read_bytes()) == plain.read_bytes()
    assert write_idx(tmp_path / "c-idx2-ubyte", array).name == "c-idx2-ubyte.gz"


def test_parse_idx_shapes() -> None:
    raw = bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 0, 1, 2, 3, 4, 5])
    parsed = parse_idx(raw)
    assert parsed.shape == (2, 3) and parsed.dtype == np.uint8
    assert parsed.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert parse_idx(bytes([0, 0, 8, 1, 0, 0, 0, 0])).shape == (0,)


@pytest.mark.parametrize(
    "raw",
    [b"\x01\x00\x08\x01\x00\x00\x00\x00", b"\x00\x01\x08\x01\x00\x00\x00\x00", b"\x00\x00\x08"],
)
def test_parse_idx_checks_every_magic_byte(raw: bytes) -> None:
    with pytest.raises(DatasetError, match=r"^<bytes> is not an unsigned-byte IDX file"):
        parse_idx(raw)


def test_parse_idx_names_the_file_and_the_sizes() -> None:
    with pytest.raises(DatasetError) as excinfo:
        parse_idx(b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02", "x.idx")
    assert str(excinfo.value) == (
        "x.idx: IDX header announces 5 bytes of data for shape (5,), file holds 2"
    )
    with pytest.raises(DatasetError, match=r"^x.idx: truncated IDX header$"):
        parse_idx(b"\x00\x00\x08\x02\x00\x00\x00\x01", "x.idx")


def _synthetic_md5s(folder: Path) -> dict[str, tuple[str, str]]:
    sums = {}
    for key, (stem, _) in FILES.items():
        with gzip.open(folder / f"{stem}.gz", "rb") as f:
            sums[key] = (stem, hashlib.md5(f.read()).hexdigest())
    return sums


def test_load_raw_verifies_and_returns_the_checksums(
    synthetic_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fmnist.dataset as ds

    sums = _synthetic_md5s(synthetic_data_dir)
    monkeypatch.setattr(ds, "FILES", sums)
    arrays, md5s, folder = load_raw(synthetic_data_dir)  # verify=True: must pass
    assert folder == synthetic_data_dir
    assert md5s == {stem: md5 for stem, md5 in sums.values()}
    assert arrays["train_images"].shape == (600, 28, 28)
    assert arrays["test_labels"].shape == (200,)
    # One wrong checksum is enough to refuse the set, and the message names both sums.
    stem, md5 = sums["test_labels"]
    monkeypatch.setitem(sums, "test_labels", (stem, "0" * 32))
    with pytest.raises(DatasetError) as excinfo:
        load_raw(synthetic_data_dir)
    assert f"corrupt: md5 {md5}, expected {'0' * 32}" in str(excinfo.value)
    assert load_raw(synthetic_data_dir, verify=False)[1][stem] == md5


@pytest.mark.parametrize(
    ("key", "array"),
    [
        ("test_labels", np.zeros(199, dtype=np.uint8)),  # one label short
        ("test_images", np.zeros((200, 28, 27), dtype=np.uint8)),
        ("train_images", np.zeros((600, 784), dtype=np.uint8)),
    ],
)
def test_load_raw_refuses_images_and_labels_that_do_not_match(
    synthetic_data_dir: Path, tmp_path: Path, key: str, array: np.ndarray
) -> None:
    folder = tmp_path / "data"
    shutil.copytree(synthetic_data_dir, folder)
    write_idx(folder / FILES[key][0], array)
    with pytest.raises(DatasetError) as excinfo:
        load_raw(folder, verify=False)
    assert str(excinfo.value).endswith("do not match (expected (N, 28, 28) and (N,))")


def test_load_test_set_limit_and_dtypes(synthetic_data_dir: Path) -> None:
    split = load_test_set(synthetic_data_dir, verify=False, limit=12)
    assert len(split) == 12 and split.images.shape == (12, 28, 28)
    assert split.labels.dtype == np.int64
    assert split.labels.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]


class _Answer(io.BytesIO):
    def __enter__(self) -> _Answer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def test_download_tries_the_next_mirror_and_skips_what_is_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import fmnist.dataset as ds

    asked: list[tuple[str, float]] = []

    def urlopen(url: str, timeout: float) -> _Answer:
        asked.append((url, timeout))
        if url.startswith(MIRRORS[0]):
            raise OSError("mirror down")
        return _Answer(b"payload of " + url.encode())

    monkeypatch.setattr(ds.urllib.request, "urlopen", urlopen)
    dest = tmp_path / "cache"
    dest.mkdir()
    (dest / "train-images-idx3-ubyte.gz").write_bytes(b"already here")  # the first file
    with caplog.at_level(logging.INFO, logger="fmnist.dataset"):
        assert ds._download(dest) == dest
    stems = [stem for stem, _ in FILES.values() if stem != "train-images-idx3-ubyte"]
    # Every request is bounded in time: a dead mirror cannot hang the download.
    assert asked == [(m + s + ".gz", 30) for s in stems for m in MIRRORS]
    assert caplog.messages == [f"downloading {m}{s}.gz" for s in stems for m in MIRRORS]
    for stem in stems:
        assert (dest / f"{stem}.gz").read_bytes() == f"payload of {MIRRORS[1]}{stem}.gz".encode()
    assert (dest / "train-images-idx3-ubyte.gz").read_bytes() == b"already here"
    assert not list(dest.glob("*.part"))


def test_download_that_fails_everywhere_says_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fmnist.dataset as ds

    def urlopen(url: str, timeout: float) -> _Answer:
        raise OSError("no network")

    monkeypatch.setattr(ds.urllib.request, "urlopen", urlopen)
    with pytest.raises(DatasetError) as excinfo:
        ds._download(tmp_path / "new" / "cache")
    assert (tmp_path / "new" / "cache").is_dir()
    message = str(excinfo.value)
    assert message.startswith("download of train-images-idx3-ubyte failed (")
    assert f"{MIRRORS[0]}: no network; {MIRRORS[1]}: no network" in message
    assert "apt-get install dataset-fashion-mnist" in message


def test_find_data_dir_downloads_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fmnist.dataset as ds

    monkeypatch.delenv("FMNIST_DATA_DIR", raising=False)
    monkeypatch.setattr(ds, "DEBIAN_DIR", tmp_path / "debian")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    calls: list[Path] = []

    def download(dest: Path) -> Path:
        calls.append(dest)
        return dest

    monkeypatch.setattr(ds, "_download", download)
    with pytest.raises(DatasetError):
        find_data_dir()
    assert calls == []
    assert find_data_dir(download=True) == tmp_path / "xdg" / "fmnist"
    assert calls == [tmp_path / "xdg" / "fmnist"]
    with pytest.raises(DatasetError, match="not found"):
        load_raw()  # no download unless asked
    assert len(calls) == 1


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_split_fraction_must_be_strictly_between_0_and_1(fraction: float) -> None:
    with pytest.raises(ValueError, match=f"val_fraction must be in \\(0, 1\\), got {fraction}"):
        train_val_split(100, fraction, seed=0)


def test_split_is_sorted_and_rounds_the_validation_size() -> None:
    train, val = train_val_split(10, 0.26, seed=3)
    assert (len(train), len(val)) == (7, 3)  # 2.6 rounds to 3
    assert train.tolist() == sorted(train.tolist()) and val.tolist() == sorted(val.tolist())


def test_load_raw_downloads_when_asked(
    synthetic_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fmnist.dataset as ds

    monkeypatch.delenv("FMNIST_DATA_DIR", raising=False)
    monkeypatch.setattr(ds, "DEBIAN_DIR", tmp_path / "debian")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(ds, "_download", lambda dest: synthetic_data_dir)
    assert load_raw(verify=False, download=True)[2] == synthetic_data_dir


def test_load_test_set_verifies_by_default(synthetic_data_dir: Path) -> None:
    with pytest.raises(DatasetError, match="corrupt: md5"):
        load_test_set(synthetic_data_dir)


def test_a_broken_idx_file_is_named(synthetic_data_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    shutil.copytree(synthetic_data_dir, folder)
    broken = folder / f"{FILES['test_labels'][0]}.gz"
    broken.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x09\x01"))
    with pytest.raises(DatasetError) as excinfo:
        load_raw(folder, verify=False)
    assert str(excinfo.value).startswith(f"{broken}: IDX header announces 9 bytes")
