"""Train the study's CNNs on Fashion-MNIST, one training loop for every registered model.

    fmnist-train                                  # both models, the study's settings
    fmnist-train --models baseline --epochs 1 --limit-batches 20   # quick check

Each model's run folder (``OUT/runs/MODEL``) gets ``checkpoint.pt`` after every epoch,
``best.pt`` (best validation accuracy), ``final.pt`` (last epoch), ``history.json`` and
``summary.json``. Running the same command again resumes from the last finished epoch and
ends with the same history as an uninterrupted run; a finished run is reused as it is.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from fmnist.dataset import DatasetError
from training.data import Datasets, add_dataset_arguments, load_datasets
from training.models import STUDY_MODELS, build_model, count_parameters
from training.recipe import (
    RECIPES,
    STUDY,
    Recipe,
    augment_batch,
    fit_temperature,
    make_optimizer,
    make_scheduler,
)

log = logging.getLogger(__name__)

# Measured on the 2-core CPU (benchmarks/train_throughput.py): channels-last helps the
# deeper model's 128-channel conv and slows the baseline.
CHANNELS_LAST_ON_CPU = {"baseline": False, "deeper": True, "improved": True}


@dataclass(frozen=True)
class TrainConfig:
    model: str
    recipe: Recipe = STUDY
    seed: int = 42
    limit_batches: int | None = None  # quick mode: at most this many batches per epoch
    # Fields below do not change the result, so they may differ on resume.
    threads: int | None = None
    device: str = "auto"
    channels_last: bool | None = None  # None: per-model default on CPU, off on CUDA

    @classmethod
    def for_model(cls, model: str, **overrides: Any) -> TrainConfig:
        """The model's registered recipe, with recipe fields or run settings overridden."""
        recipe_keys = set(Recipe.__dataclass_fields__)
        recipe = RECIPES.get(model, STUDY)
        changes = {k: v for k, v in overrides.items() if k in recipe_keys and v is not None}
        if changes:
            recipe = replace(recipe, **changes)
        rest = {k: v for k, v in overrides.items() if k not in recipe_keys}
        return cls(model=model, recipe=recipe, **rest)

    def result_fields(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "seed": self.seed,
            "limit_batches": self.limit_batches,
            **self.recipe.as_dict(),
        }


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    seconds: float


@dataclass
class RunState:
    config: dict[str, Any]
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    best_val_acc: float = -1.0


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _prepare(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 1000,
    channels_last: bool = False,
) -> tuple[float, float, torch.Tensor]:
    """Mean cross-entropy, accuracy and logits (N, 10) of ``model`` in eval mode."""
    model.eval()
    device = next(model.parameters()).device
    logits = []
    for i in range(0, len(x), batch_size):
        xb = _prepare(x[i : i + batch_size].to(device), channels_last)
        logits.append(model(xb).float().cpu())
    out = torch.cat(logits)
    loss = nn.functional.cross_entropy(out, y).item()
    acc = (out.argmax(1) == y).float().mean().item()
    return loss, acc, out


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    epoch: int,
    channels_last: bool,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> tuple[float, float]:
    """One pass over (x, y) in a seeded order; returns mean train loss and accuracy."""
    recipe = cfg.recipe
    model.train()
    device = next(model.parameters()).device
    # Seed shuffling, augmentation and dropout from (seed, epoch) alone, so a resumed run
    # replays the exact same epochs as an uninterrupted one.
    torch.manual_seed(cfg.seed * 1_000 + epoch)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(cfg.seed + epoch))
    augment_rng = torch.Generator().manual_seed(cfg.seed * 7_919 + epoch)
    batches = range(0, len(x), recipe.batch_size)
    if cfg.limit_batches is not None:
        batches = batches[: cfg.limit_batches]
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    bar = tqdm(
        batches,
        desc=f"{cfg.model} epoch {epoch}/{recipe.epochs}",
        leave=False,
        disable=None,
        unit="batch",
    )
    for start in bar:
        idx = order[start : start + recipe.batch_size]
        xb = x[idx].to(device, non_blocking=True)
        if recipe.augment:
            xb = augment_batch(xb, augment_rng)
        xb = _prepare(xb, channels_last)
        yb = y[idx].to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=recipe.bf16_autocast):
            logits = model(xb)
            loss = nn.functional.cross_entropy(logits, yb, label_smoothing=recipe.label_smoothing)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        # Accumulate on the device: no host sync per batch.
        loss_sum += loss.detach() * len(idx)
        correct += (logits.argmax(1) == yb).sum()
        seen += len(idx)
    return loss_sum.item() / seen, correct.item() / seen


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _write_json(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def run_dir(out: Path, model: str) -> Path:
    return Path(out) / "runs" / model


def _stopped_early(state: RunState, recipe: Recipe) -> bool:
    return (
        recipe.patience is not None
        and bool(state.history)
        and state.history[-1].epoch - state.best_epoch >= recipe.patience
    )


def calibration(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> dict[str, float]:
    """ECE (15 bins) and NLL of softmax(logits / T)."""
    from fmnist.metrics import reliability

    probs = torch.softmax(logits / temperature, dim=1)
    conf, pred = probs.max(1)
    ece = reliability(labels.numpy(), pred.numpy(), conf.numpy()).ece
    nll = nn.functional.cross_entropy(logits / temperature, labels).item()
    return {"ece": ece, "nll": nll}


def train_model(cfg: TrainConfig, data: Datasets, out: Path) -> dict[str, Any]:
    """Train (or resume, or reuse) one model; returns its summary."""
    recipe = cfg.recipe
    folder = run_dir(out, cfg.model)
    folder.mkdir(parents=True, exist_ok=True)
    device = pick_device(cfg.device)
    channels_last = (
        cfg.channels_last
        if cfg.channels_last is not None
        else (device.type == "cpu" and CHANNELS_LAST_ON_CPU.get(cfg.model, False))
    )
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(list(model.parameters()), recipe)
    steps = len(range(0, len(data.train_x), recipe.batch_size))
    if cfg.limit_batches is not None:
        steps = min(steps, cfg.limit_batches)
    scheduler = make_scheduler(optimizer, recipe, steps)
    state = RunState(config=cfg.result_fields())
    best_weights: dict[str, torch.Tensor] | None = None

    ckpt_path = folder / "checkpoint.pt"
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=True)
        # Checkpoints written before recipes existed hold the study recipe implicitly.
        stored = {**STUDY.as_dict(), **ckpt["config"]}
        if stored != state.config:
            raise ValueError(
                f"{ckpt_path} was made with {stored}, not {state.config}; "
                "use another --out or --restart"
            )
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
        state.history = [EpochRecord(**r) for r in ckpt["history"]]
        state.best_epoch, state.best_val_acc = ckpt["best_epoch"], ckpt["best_val_acc"]
        best_weights = ckpt["best_model"]
        log.info("%s: resuming after epoch %d", cfg.model, len(state.history))

    for epoch in range(len(state.history) + 1, recipe.epochs + 1):
        if _stopped_early(state, recipe):
            break
        t0 = time.perf_counter()
        train_loss, train_acc = train_one_epoch(
            model, optimizer, data.train_x, data.train_y, cfg, epoch, channels_last, scheduler
        )
        val_loss, val_acc, _ = evaluate(model, data.val_x, data.val_y, channels_last=channels_last)
        rec = EpochRecord(epoch, train_loss, train_acc, val_loss, val_acc, time.perf_counter() - t0)
        state.history.append(rec)
        if val_acc > state.best_val_acc:
            state.best_epoch, state.best_val_acc = epoch, val_acc
            best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        log.info(
            "%s epoch %2d/%d  train loss %.4f acc %.4f | val loss %.4f acc %.4f | %.1fs",
            cfg.model,
            epoch,
            recipe.epochs,
            train_loss,
            train_acc,
            val_loss,
            val_acc,
            rec.seconds,
        )
        _atomic_save(
            {
                "config": state.config,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "history": [asdict(r) for r in state.history],
                "best_epoch": state.best_epoch,
                "best_val_acc": state.best_val_acc,
                "best_model": best_weights,
            },
            ckpt_path,
        )
        _write_json([asdict(r) for r in state.history], folder / "history.json")

    assert best_weights is not None, "training ran no epoch"
    _atomic_save(model.state_dict(), folder / "final.pt")
    _atomic_save(best_weights, folder / "best.pt")
    _, test_acc_final, _ = evaluate(model, data.test_x, data.test_y, channels_last=channels_last)
    final_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_weights)
    _, test_acc_best, _ = evaluate(model, data.test_x, data.test_y, channels_last=channels_last)
    if recipe.export_weights == "final":
        model.load_state_dict(final_weights)
    # ``model`` now holds the weights that get exported.
    _, val_acc_exported, val_logits = evaluate(
        model, data.val_x, data.val_y, channels_last=channels_last
    )
    _, test_acc, test_logits = evaluate(
        model, data.test_x, data.test_y, channels_last=channels_last
    )
    temperature = fit_temperature(val_logits, data.val_y) if recipe.temperature_scaling else 1.0
    last = state.history[-1]
    summary = {
        "model": cfg.model,
        "parameters": count_parameters(model),
        "epochs": len(state.history),
        "stopped_early": len(state.history) < recipe.epochs,
        "best_val_acc": state.best_val_acc,
        "best_epoch": state.best_epoch,
        "final_val_acc": last.val_acc,
        "final_train_acc": last.train_acc,
        # The study reports its final model's test accuracy, so the study's models export
        # their final weights; a recipe may choose the best-validation weights instead.
        # test_acc is always that of the exported weights.
        "exported_weights": recipe.export_weights,
        "exported_val_acc": val_acc_exported,
        "test_acc": test_acc,
        "test_acc_final_weights": test_acc_final,
        "test_acc_best_val_weights": test_acc_best,
        "temperature": temperature,
        "calibration": {
            "val_before": calibration(val_logits, data.val_y, 1.0),
            "val_after": calibration(val_logits, data.val_y, temperature),
            "test_before": calibration(test_logits, data.test_y, 1.0),
            "test_after": calibration(test_logits, data.test_y, temperature),
        },
        "train_seconds": sum(r.seconds for r in state.history),
        "device": str(device),
        "channels_last": channels_last,
        "config": state.config,
        "dataset_md5": data.checksums,
    }
    _write_json(summary, folder / "summary.json")
    return summary


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(
        "--models",
        nargs="+",
        default=list(STUDY_MODELS),
        choices=sorted(RECIPES),
        help="models to train, each with its registered recipe (training.recipe)",
    )
    p.add_argument(
        "--epochs", type=int, default=None, help="override the recipe's epochs (study: 20)"
    )
    p.add_argument(
        "--batch-size", type=int, default=None, help="override the recipe's batch size (study: 64)"
    )
    p.add_argument(
        "--lr", type=float, default=None, help="override the recipe's learning rate (study: 1e-3)"
    )
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--limit-batches", type=int, default=None, help="quick mode: at most N batches per epoch"
    )
    add_dataset_arguments(p)
    p.add_argument(
        "--download", action="store_true", help="download the dataset when it is nowhere on disk"
    )
    p.add_argument("--out", type=Path, default=Path("artifacts"), help="output folder")
    p.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: all cores)"
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--restart", action="store_true", help="discard existing checkpoints")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        data = load_datasets(
            args.data_dir, seed=args.seed, download=args.download, verify=not args.skip_checksums
        )
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summaries = []
    for name in args.models:
        cfg = TrainConfig.for_model(
            name,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            limit_batches=args.limit_batches,
            threads=args.threads,
            device=args.device,
        )
        if args.restart:
            (run_dir(args.out, name) / "checkpoint.pt").unlink(missing_ok=True)
        try:
            summaries.append(train_model(cfg, data, args.out))
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    for s in summaries:
        print(
            f"{s['model']:>9}: {s['parameters']:,} params, best val {s['best_val_acc']:.4f} "
            f"(epoch {s['best_epoch']}), test {s['test_acc']:.4f}, "
            f"{s['train_seconds']:.0f}s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
