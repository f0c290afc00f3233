"""Tensors for training: the study's 54,000 / 6,000 split and [-1, 1] scaling.

The whole dataset (70,000 × 784 floats ≈ 220 MB) lives in memory as one tensor per split,
so a batch is an index into it: no DataLoader, no per-image transform. That input
pipeline is most of the speed-up over a plain torchvision loop (benchmarks/).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fmnist.contract import PIXEL_SCALE, PIXEL_SHIFT
from fmnist.dataset import load_raw, train_val_split

VAL_FRACTION = 0.1  # 60,000 → 54,000 train + 6,000 validation, as in the study


def scale_pixels(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) → float32 (N, 1, 28, 28) in [-1, 1]: Normalize(0.5, 0.5) of ToTensor.

    The contract's scaling (``fmnist.contract``), the same the exported graph applies.
    """
    x = torch.from_numpy(np.array(images, dtype=np.float32))
    return (x / PIXEL_SCALE - PIXEL_SHIFT).unsqueeze(1)


@dataclass(frozen=True)
class Datasets:
    train_x: torch.Tensor  # (54000, 1, 28, 28) float32 in [-1, 1]
    train_y: torch.Tensor  # (54000,) int64
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    test_images: np.ndarray  # raw uint8 (10000, 28, 28), for export parity and figures
    checksums: dict[str, str]
    source: Path


def load_datasets(
    data_dir: str | Path | None = None,
    seed: int = 0,
    val_fraction: float = VAL_FRACTION,
    download: bool = False,
    verify: bool = True,
) -> Datasets:
    arrays, sums, folder = load_raw(data_dir, verify=verify, download=download)
    train_idx, val_idx = train_val_split(len(arrays["train_labels"]), val_fraction, seed)
    images, labels = arrays["train_images"], arrays["train_labels"].astype(np.int64)
    return Datasets(
        train_x=scale_pixels(images[train_idx]),
        train_y=torch.from_numpy(labels[train_idx]),
        val_x=scale_pixels(images[val_idx]),
        val_y=torch.from_numpy(labels[val_idx]),
        test_x=scale_pixels(arrays["test_images"]),
        test_y=torch.from_numpy(arrays["test_labels"].astype(np.int64)),
        test_images=arrays["test_images"],
        checksums=sums,
        source=folder,
    )


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data-dir`` and ``--skip-checksums``, the same for every training CLI."""
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder with the four IDX files (else $FMNIST_DATA_DIR, the Debian package, "
        "the cache)",
    )
    parser.add_argument(
        "--skip-checksums",
        action="store_true",
        help="accept IDX files whose md5 differs from the official ones (synthetic data)",
    )
