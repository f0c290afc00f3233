"""Fashion-MNIST on disk: find the four IDX files, check them, read them into numpy.

Torch-free on purpose: training, evaluation and the service all read the data through
this module, and the last two must not need torch.

Discovery order (first hit wins):
  1. an explicit directory (``--data-dir``),
  2. ``$FMNIST_DATA_DIR``,
  3. the Debian package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``),
  4. the local cache (``$XDG_CACHE_HOME/fmnist`` or ``~/.cache/fmnist``),
  5. a download from torchvision's mirrors into the cache (opt-in, ``download=True``).
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import struct
import urllib.request  # not httpx: the torch-free core depends on numpy alone
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SHAPE = (28, 28)

# md5 of the *decompressed* IDX files (DESIGN.md).
FILES: dict[str, tuple[str, str]] = {
    "train_images": ("train-images-idx3-ubyte", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
    "train_labels": ("train-labels-idx1-ubyte", "9018921c3c673c538a1fc5bad174d6f9"),
    "test_images": ("t10k-images-idx3-ubyte", "8181f5470baa50b63fa0f6fddb340f0a"),
    "test_labels": ("t10k-labels-idx1-ubyte", "15d484375f8d13e6eb1aabb0c3f46965"),
}
ENV_VAR = "FMNIST_DATA_DIR"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://ossci-datasets.s3.amazonaws.com/fashion-mnist/",
)
HOW_TO_GET = (
    "install it with `apt-get install dataset-fashion-mnist`, or pass --data-dir / set "
    f"${ENV_VAR} to a folder holding the four IDX files (gzipped or not)"
)


class DatasetError(RuntimeError):
    """The dataset is missing, unreadable or fails its checksum."""


@dataclass(frozen=True)
class Split:
    """Images as uint8 ``(N, 28, 28)`` and labels as int64 ``(N,)``."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fmnist"


def candidate_dirs(data_dir: str | Path | None = None) -> list[Path]:
    dirs: list[Path] = []
    if data_dir is not None:
        dirs.append(Path(data_dir))
    if os.environ.get(ENV_VAR):
        dirs.append(Path(os.environ[ENV_VAR]))
    dirs += [DEBIAN_DIR, cache_dir()]
    return dirs


def _file_in(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError) as exc:  # gzip raises BadGzipFile (an OSError) or EOFError
        raise DatasetError(f"cannot read {path}: {exc}; {HOW_TO_GET}") from exc


def parse_idx(raw: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode an IDX file (unsigned-byte data only, as Fashion-MNIST uses)."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetError(f"{source} is not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{source}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape)) if shape else 0
    if len(raw) - header != expected:
        raise DatasetError(
            f"{source}: IDX header announces {expected} bytes of data for shape {shape}, "
            f"file holds {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    """Write a uint8 array as an IDX file (used by tests to build synthetic datasets)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    raw = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += array.tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        path = path.with_name(path.name + ".gz") if path.suffix != ".gz" else path
        with gzip.open(path, "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)
    return path


def find_data_dir(data_dir: str | Path | None = None, download: bool = False) -> Path:
    """The folder holding all four files: the explicit one, else the first candidate."""
    if data_dir is not None:
        # An explicit folder that lacks the files is the user's mistake: say so rather
        # than silently fall back to another copy.
        missing = [s for s, _ in FILES.values() if not _file_in(Path(data_dir), s)]
        if missing:
            raise DatasetError(f"{data_dir} lacks {', '.join(missing)}; {HOW_TO_GET}")
        return Path(data_dir)
    tried = candidate_dirs()
    for folder in tried:
        if all(_file_in(folder, stem) for stem, _ in FILES.values()):
            return folder
    if download:
        return _download(cache_dir())
    raise DatasetError(
        "Fashion-MNIST not found (looked in "
        + ", ".join(str(d) for d in tried)
        + f"); {HOW_TO_GET}"
    )


def _download(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for stem, _ in FILES.values():
        target = dest / (stem + ".gz")
        if target.exists():
            continue
        errors = []
        for mirror in MIRRORS:
            try:
                log.info("downloading %s%s.gz", mirror, stem)
                with urllib.request.urlopen(mirror + stem + ".gz", timeout=30) as r:
                    tmp = target.with_suffix(".part")
                    tmp.write_bytes(r.read())
                    tmp.replace(target)
                break
            except OSError as exc:
                errors.append(f"{mirror}: {exc}")
        else:
            raise DatasetError(f"download of {stem} failed ({'; '.join(errors)}); {HOW_TO_GET}")
    return dest


def load_raw(
    data_dir: str | Path | None = None, verify: bool = True, download: bool = False
) -> tuple[dict[str, np.ndarray], dict[str, str], Path]:
    """All four arrays by key, their md5 checksums, and the folder they came from."""
    folder = find_data_dir(data_dir, download=download)
    arrays: dict[str, np.ndarray] = {}
    sums: dict[str, str] = {}
    for key, (stem, md5) in FILES.items():
        path = _file_in(folder, stem)
        assert path is not None  # find_data_dir checked
        raw = _read_bytes(path)
        digest = hashlib.md5(raw).hexdigest()
        if verify and digest != md5:
            raise DatasetError(
                f"{path} is corrupt: md5 {digest}, expected {md5}; delete it and {HOW_TO_GET}"
            )
        arrays[key] = parse_idx(raw, str(path))
        sums[stem] = digest
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE or len(images) != len(labels):
            raise DatasetError(
                f"{part} set in {folder}: images {images.shape} and labels {labels.shape} "
                "do not match (expected (N, 28, 28) and (N,))"
            )
    return arrays, sums, folder


def load_test_set(
    data_dir: str | Path | None = None, verify: bool = True, limit: int | None = None
) -> Split:
    """The 10,000 test images (or the first ``limit``)."""
    arrays, _, _ = load_raw(data_dir, verify=verify)
    images, labels = arrays["test_images"], arrays["test_labels"].astype(np.int64)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return Split(images, labels)


def train_val_split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded permutation of ``range(n)`` cut into train and validation indices."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * val_fraction))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])
