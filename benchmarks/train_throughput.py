"""Training images/s: a plain eager PyTorch loop vs the project's training step, per model.

    .venv/bin/python benchmarks/train_throughput.py            # real data, 150 batches each
    .venv/bin/python benchmarks/train_throughput.py --batches 30 --compile

"plain" is the loop most tutorials write (and the study used): a torchvision-style Dataset
that turns each PIL image into a tensor with ToTensor + Normalize, a DataLoader with
batch 64 and shuffling, NCHW tensors. The variants change one thing at a time so the
table says where the speed comes from; "project" is exactly what ``fmnist-train`` runs
(``training.train.train_one_epoch``: in-memory tensors, per-model memory format).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from fmnist.dataset import DatasetError, load_raw
from fmnist.markdown import markdown_table
from fmnist.registry import model_names, study_models
from training.data import scale_pixels
from training.models import build_model, channels_last_on_cpu
from training.train import TrainConfig, epoch_batches, train_one_epoch


class PILDataset(Dataset):
    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels
        self.transform = transforms.Compose(
            [transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))]
        )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[i], mode="L")), int(self.labels[i])


def plain_loop(name: str, images: np.ndarray, labels: np.ndarray, batches: int) -> float:
    torch.manual_seed(0)
    model = build_model(name)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    loader = DataLoader(PILDataset(images, labels), batch_size=64, shuffle=True)
    model.train()
    seen, start = 0, time.perf_counter()
    for i, (x, y) in enumerate(loader):
        if i == batches:
            break
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        seen += len(y)
    return seen / (time.perf_counter() - start)


def tensor_loop(
    name: str,
    x: torch.Tensor,
    y: torch.Tensor,
    batches: int,
    channels_last: bool,
    compile_model: bool = False,
    bf16: bool = False,
) -> float:
    torch.manual_seed(0)
    model: nn.Module = build_model(name)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    if compile_model:
        model = torch.compile(model)
    cfg = TrainConfig.for_model(name, epochs=1, limit_batches=5, bf16_autocast=bf16)
    train_one_epoch(model, opt, x, y, cfg, 1, channels_last)  # warm-up (and compilation)
    cfg = TrainConfig.for_model(name, epochs=1, limit_batches=batches, bf16_autocast=bf16)
    start = time.perf_counter()
    train_one_epoch(model, opt, x, y, cfg, 2, channels_last)
    return images_in(cfg, len(x)) / (time.perf_counter() - start)


def images_in(cfg: TrainConfig, n: int) -> int:
    """How many of ``n`` images one ``train_one_epoch`` under ``cfg`` trains on: its
    recipe's batch size (64 for the study's models, 128 for ``improved``) times the batches,
    the last one possibly short."""
    return sum(min(cfg.recipe.batch_size, n - start) for start in epoch_batches(n, cfg))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batches", type=int, default=150, help="timed batches per variant")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile")
    p.add_argument("--only", nargs="*", default=None, help="run only variants containing these")
    p.add_argument("--models", nargs="+", default=list(study_models()), choices=model_names())
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        arrays, _, _ = load_raw()
        images, labels = arrays["train_images"], arrays["train_labels"].astype(np.int64)
        source = "real Fashion-MNIST"
    except DatasetError:
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (20_000, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, 20_000)
        source = "random images (dataset not found)"
    x, y = scale_pixels(images), torch.from_numpy(labels)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {source}, "
        f"{args.batches} batches per variant (the plain loop's of 64 images, the others' of "
        "each model's recipe batch size)\n"
    )
    rows: list[list[object]] = []
    for name in args.models:
        cl = channels_last_on_cpu(name)
        variants: list[tuple[str, Callable[[], float]]] = [
            (
                "plain eager loop (DataLoader + ToTensor/Normalize)",
                partial(plain_loop, name, images, labels, args.batches),
            ),
            (
                "in-memory tensors, NCHW",
                partial(tensor_loop, name, x, y, args.batches, channels_last=False),
            ),
            (
                "in-memory tensors, channels-last",
                partial(tensor_loop, name, x, y, args.batches, channels_last=True),
            ),
        ]
        if args.compile:
            variants.append(
                (
                    "in-memory tensors, torch.compile",
                    partial(
                        tensor_loop, name, x, y, args.batches, channels_last=cl, compile_model=True
                    ),
                )
            )
        variants.append(
            (
                "in-memory tensors, channels-last, bf16 autocast (not the study's fp32)",
                partial(tensor_loop, name, x, y, args.batches, channels_last=True, bf16=True),
            )
        )
        variants.append(
            (
                f"**project step** ({'channels-last' if cl else 'NCHW'})",
                partial(tensor_loop, name, x, y, args.batches, channels_last=cl),
            )
        )
        if args.only:
            keep = [v for v in variants[1:] if any(o in v[0] for o in args.only)]
            variants = variants[:1] + keep
        plain = None
        for label, fn in variants:
            rate = fn()
            plain = plain or rate
            rows.append([name, label, f"{rate:,.0f}", f"{rate / plain:.2f}×"])
            print(*rows[-1], sep="\t", file=sys.stderr, flush=True)  # progress
    print(markdown_table(["model", "variant", "images/s", "× plain"], rows, "llrr"))


if __name__ == "__main__":
    main()
