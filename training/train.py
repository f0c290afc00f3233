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
import hashlib
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
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from fmnist.contract import ARTIFACTS_DIR
from fmnist.dataset import DatasetError
from fmnist.metrics import ECE_BINS, reliability
from fmnist.registry import model_names, study_models
from training.data import Datasets, add_dataset_arguments, load_datasets
from training.models import build_model, channels_last_on_cpu, count_parameters, run_model
from training.recipe import (
    STUDY,
    Recipe,
    augment_batch,
    cutmix_batch,
    distillation_loss,
    fit_temperature,
    make_optimizer,
    make_scheduler,
    recipe_for,
    registry_failure,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    model: str
    recipe: Recipe = STUDY
    seed: int = 42
    limit_batches: int | None = None  # quick mode: at most this many batches per epoch
    # Fields below do not change the result, so they may differ on resume.
    threads: int | None = None
    device: str = "auto"
    # None: the architecture's ``channels_last_on_cpu`` on a CPU, off on CUDA.
    channels_last: bool | None = None
    # The run folder (``runs/<model>``) of a finished run whose final weights teach this one
    # (a recipe with ``distill_weight``); recorded in the result by its weights' sha256.
    teacher: Path | None = None

    @classmethod
    def for_model(cls, model: str, **overrides: Any) -> TrainConfig:
        """The model's registered recipe, with recipe fields or run settings overridden."""
        recipe_keys = set(Recipe.__dataclass_fields__)
        recipe = recipe_for(model)
        changes = {k: v for k, v in overrides.items() if k in recipe_keys and v is not None}
        if changes:
            recipe = replace(recipe, **changes)
        rest = {k: v for k, v in overrides.items() if k not in recipe_keys}
        return cls(model=model, recipe=recipe, **rest)

    def result_fields(self) -> dict[str, Any]:
        fields = {
            "model": self.model,
            "seed": self.seed,
            "limit_batches": self.limit_batches,
            **self.recipe.as_dict(),
        }
        if self.recipe.distill_weight:
            fields["teacher"] = teacher_fingerprint(self.teacher)
        return fields


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    seconds: float
    # With an EMA recipe, val_loss/val_acc are the average's; this is the raw weights' (last
    # epoch only: a second validation pass every epoch costs a fifth of the epoch).
    val_acc_raw: float | None = None


@dataclass
class RunState:
    """What a checkpoint holds besides the model, optimizer and scheduler."""

    config: dict[str, Any]
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    best_val_acc: float = -1.0
    best_weights: dict[str, torch.Tensor] | None = None


@dataclass
class TrainingSetup:
    """The network, its optimizer and schedule, on their device."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    device: torch.device
    channels_last: bool
    ema: AveragedModel | None = None
    teacher: nn.Module | None = None  # frozen, in eval mode, with a distillation recipe

    @property
    def scored(self) -> nn.Module:
        """The network that is validated, kept and exported: the EMA when the recipe has one."""
        return self.ema.module if self.ema is not None else self.model


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


def epoch_batches(n: int, cfg: TrainConfig) -> range:
    """Where each batch of one epoch over ``n`` images starts (the last may be short)."""
    batches = range(0, n, cfg.recipe.batch_size)
    return batches if cfg.limit_batches is None else batches[: cfg.limit_batches]


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    epoch: int,
    channels_last: bool,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    ema: AveragedModel | None = None,
    teacher: nn.Module | None = None,
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
    batches = epoch_batches(len(x), cfg)
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
            xb = augment_batch(xb, augment_rng, erase_p=recipe.erase_p)
        yb = y[idx].to(device, non_blocking=True)
        mix = None
        if recipe.cutmix_p and float(torch.rand((), generator=augment_rng)) < recipe.cutmix_p:
            xb, perm, lam = cutmix_batch(xb, augment_rng)
            mix = (yb[perm], lam)
        xb = _prepare(xb, channels_last)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=recipe.bf16_autocast):
            logits = model(xb)
            loss = nn.functional.cross_entropy(logits, yb, label_smoothing=recipe.label_smoothing)
            if mix is not None:
                other = nn.functional.cross_entropy(
                    logits, mix[0], label_smoothing=recipe.label_smoothing
                )
                loss = mix[1] * loss + (1.0 - mix[1]) * other
            if teacher is not None:
                with torch.no_grad():
                    taught = teacher(xb)
                w = recipe.distill_weight
                soft = distillation_loss(logits, taught, recipe.distill_temperature)
                loss = (1.0 - w) * loss + w * soft
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if ema is not None:
            ema.update_parameters(model)
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


def read_history(out: Path, model: str) -> list[dict[str, Any]]:
    """A run's epochs as ``run_epochs`` wrote them (``EpochRecord`` fields)."""
    history: list[dict[str, Any]] = json.loads((run_dir(out, model) / "history.json").read_text())
    return history


def _stopped_early(state: RunState, recipe: Recipe) -> bool:
    return (
        recipe.patience is not None
        and bool(state.history)
        and state.history[-1].epoch - state.best_epoch >= recipe.patience
    )


def calibration(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> dict[str, float]:
    """ECE (``fmnist.metrics``, 15 bins) and NLL of softmax(logits / T)."""
    probs = torch.softmax(logits / temperature, dim=1)
    conf, pred = probs.max(1)
    ece = reliability(labels.numpy(), pred.numpy(), conf.numpy(), bins=ECE_BINS).ece
    nll = nn.functional.cross_entropy(logits / temperature, labels).item()
    return {"ece": ece, "nll": nll}


def steps_per_epoch(n_train: int, cfg: TrainConfig) -> int:
    steps = len(range(0, n_train, cfg.recipe.batch_size))
    return steps if cfg.limit_batches is None else min(steps, cfg.limit_batches)


def set_up(cfg: TrainConfig, n_train: int) -> TrainingSetup:
    """A seeded network on its device, in its memory format, with optimizer and schedule."""
    device = pick_device(cfg.device)
    channels_last = (
        cfg.channels_last
        if cfg.channels_last is not None
        else (device.type == "cpu" and channels_last_on_cpu(cfg.model))
    )
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, cfg.recipe.model_args).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(list(model.parameters()), cfg.recipe)
    scheduler = make_scheduler(optimizer, cfg.recipe, steps_per_epoch(n_train, cfg))
    ema = None
    if cfg.recipe.ema_decay is not None:
        ema = AveragedModel(
            model, multi_avg_fn=get_ema_multi_avg_fn(cfg.recipe.ema_decay), use_buffers=True
        )
    teacher = None
    if cfg.recipe.distill_weight:
        teacher = load_teacher(cfg.teacher, device, channels_last)
    return TrainingSetup(model, optimizer, scheduler, device, channels_last, ema, teacher)


def teacher_weights(folder: Path | None) -> Path:
    if folder is None:
        raise ValueError("a distillation recipe needs a teacher run folder (--teacher)")
    path = Path(folder) / "final.pt"
    if not path.is_file():
        raise ValueError(f"no teacher weights at {path}: expected a finished run's folder")
    return path


def teacher_fingerprint(folder: Path | None) -> str:
    """The teacher's weights by content: every tensor's name, dtype, shape and values.

    A different teacher is a different run, and the same weights saved again are the same
    teacher (the file's bytes are not: the same values saved from another state dict write
    another file)."""
    state = torch.load(teacher_weights(folder), map_location="cpu", weights_only=True)
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().contiguous().reshape(-1)
        digest.update(f"{name} {tensor.dtype} {tuple(state[name].shape)}\n".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:12]


def load_teacher(folder: Path | None, device: torch.device, channels_last: bool) -> nn.Module:
    """The teacher run's final weights in its own architecture (its ``summary.json``)."""
    path = teacher_weights(folder)
    net = run_model(json.loads((path.parent / "summary.json").read_text())).to(device)
    net.load_state_dict(torch.load(path, map_location=device, weights_only=True))
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    return net.eval().requires_grad_(False)


def load_checkpoint(path: Path, setup: TrainingSetup, state: RunState) -> None:
    """Resume from ``path`` (when it exists) into ``setup`` and ``state``."""
    if not path.exists():
        return
    ckpt = torch.load(path, map_location=setup.device, weights_only=True)
    # A checkpoint written before a recipe field existed holds its default implicitly.
    defaults = asdict(Recipe())
    stored = {**defaults, **ckpt["config"]}
    if stored != {**defaults, **state.config}:
        raise ValueError(
            f"{path} was made with {stored}, not {state.config}; use another --out or --restart"
        )
    setup.model.load_state_dict(ckpt["model"])
    setup.optimizer.load_state_dict(ckpt["optimizer"])
    if setup.scheduler is not None:
        setup.scheduler.load_state_dict(ckpt["scheduler"])
    if setup.ema is not None:
        setup.ema.load_state_dict(ckpt["ema"])
    state.history = [EpochRecord(**r) for r in ckpt["history"]]
    state.best_epoch, state.best_val_acc = ckpt["best_epoch"], ckpt["best_val_acc"]
    state.best_weights = ckpt["best_model"]
    log.info("%s: resuming after epoch %d", state.config["model"], len(state.history))


def save_checkpoint(path: Path, setup: TrainingSetup, state: RunState) -> None:
    scheduler = setup.scheduler
    _atomic_save(
        {
            "config": state.config,
            "model": setup.model.state_dict(),
            "optimizer": setup.optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "ema": setup.ema.state_dict() if setup.ema is not None else None,
            "history": [asdict(r) for r in state.history],
            "best_epoch": state.best_epoch,
            "best_val_acc": state.best_val_acc,
            "best_model": state.best_weights,
        },
        path,
    )


def run_epochs(
    cfg: TrainConfig, setup: TrainingSetup, data: Datasets, state: RunState, folder: Path
) -> None:
    """The epochs not yet in ``state.history``, each checkpointed, until done or stopped."""
    recipe, model = cfg.recipe, setup.model
    for epoch in range(len(state.history) + 1, recipe.epochs + 1):
        if _stopped_early(state, recipe):
            break
        t0 = time.perf_counter()
        train_loss, train_acc = train_one_epoch(
            model,
            setup.optimizer,
            data.train_x,
            data.train_y,
            cfg,
            epoch,
            setup.channels_last,
            setup.scheduler,
            setup.ema,
            setup.teacher,
        )
        val_loss, val_acc, _ = evaluate(
            setup.scored, data.val_x, data.val_y, channels_last=setup.channels_last
        )
        val_acc_raw = None  # what the average buys, measured once, at the end
        if setup.ema is not None and epoch == recipe.epochs:
            _, val_acc_raw, _ = evaluate(
                model, data.val_x, data.val_y, channels_last=setup.channels_last
            )
        rec = EpochRecord(
            epoch,
            train_loss,
            train_acc,
            val_loss,
            val_acc,
            time.perf_counter() - t0,
            val_acc_raw,
        )
        state.history.append(rec)
        if val_acc > state.best_val_acc:
            state.best_epoch, state.best_val_acc = epoch, val_acc
            state.best_weights = {
                k: v.detach().clone() for k, v in setup.scored.state_dict().items()
            }
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
        save_checkpoint(folder / "checkpoint.pt", setup, state)
        _write_json([asdict(r) for r in state.history], folder / "history.json")


# In the order the summary has always listed them (the per-class accuracy came later).
TEST_KEYS = ("test_acc", "test_acc_final_weights", "test_acc_best_val_weights", "test_class_acc")


@torch.no_grad()
def flip_tta_val_acc(folder: Path, data: Datasets) -> float:
    """Validation accuracy of a run's exported weights (``final.pt``) when each image is
    also scored mirrored and the two logits are averaged: what a horizontal-flip
    test-time augmentation would buy, at twice the inference cost. Never the test split."""
    net = run_model(json.loads((folder / "summary.json").read_text()))
    net.load_state_dict(torch.load(folder / "final.pt", weights_only=True))
    _, _, plain = evaluate(net, data.val_x, data.val_y)
    _, _, mirrored = evaluate(net, data.val_x.flip(3), data.val_y)
    return float(((plain + mirrored).argmax(1) == data.val_y).float().mean())


def class_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> list[float]:
    """Accuracy within each class (recall), indexed by label: the share of each class's
    images predicted as that class."""
    n = logits.shape[1]
    hits = torch.bincount(labels[logits.argmax(1) == labels], minlength=n)
    return (hits / torch.bincount(labels, minlength=n).clamp(min=1)).tolist()


def summarise(
    cfg: TrainConfig,
    setup: TrainingSetup,
    state: RunState,
    data: Datasets,
    score_test: bool = True,
) -> dict[str, Any]:
    """Keep the recipe's choice of weights in the model, calibrate, and summarise; with
    ``score_test`` also test both weight sets (off for the ablation, which chooses on the
    validation split only)."""
    recipe, model, cl = cfg.recipe, setup.model, setup.channels_last
    assert state.best_weights is not None, "training ran no epoch"
    tests: dict[str, Any] = {}
    if score_test:
        _, tests["test_acc_final_weights"], _ = evaluate(
            model, data.test_x, data.test_y, channels_last=cl
        )
    final_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(state.best_weights)
    if score_test:
        _, tests["test_acc_best_val_weights"], _ = evaluate(
            model, data.test_x, data.test_y, channels_last=cl
        )
    if recipe.export_weights == "final":
        model.load_state_dict(final_weights)
    # ``model`` now holds the weights that get exported.
    _, val_acc_exported, val_logits = evaluate(model, data.val_x, data.val_y, channels_last=cl)
    temperature = fit_temperature(val_logits, data.val_y) if recipe.temperature_scaling else 1.0
    cal = {
        "val_before": calibration(val_logits, data.val_y, 1.0),
        "val_after": calibration(val_logits, data.val_y, temperature),
    }
    if score_test:
        _, tests["test_acc"], test_logits = evaluate(
            model, data.test_x, data.test_y, channels_last=cl
        )
        cal["test_before"] = calibration(test_logits, data.test_y, 1.0)
        cal["test_after"] = calibration(test_logits, data.test_y, temperature)
        tests["test_class_acc"] = class_accuracy(test_logits, data.test_y)
    last = state.history[-1]
    return {
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
        **{k: tests[k] for k in TEST_KEYS if k in tests},
        "temperature": temperature,
        "calibration": cal,
        "train_seconds": sum(r.seconds for r in state.history),
        "device": str(setup.device),
        "channels_last": cl,
        "config": state.config,
        "dataset_md5": data.checksums,
    }


def train_model(
    cfg: TrainConfig, data: Datasets, out: Path, score_test: bool = True
) -> dict[str, Any]:
    """Train (or resume, or reuse) one model; returns its summary (:func:`summarise`)."""
    folder = run_dir(out, cfg.model)
    folder.mkdir(parents=True, exist_ok=True)
    setup = set_up(cfg, len(data.train_x))
    state = RunState(config=cfg.result_fields())
    load_checkpoint(folder / "checkpoint.pt", setup, state)
    run_epochs(cfg, setup, data, state, folder)
    assert state.best_weights is not None, "training ran no epoch"
    if setup.ema is not None:  # the final weights are the average's
        setup.model.load_state_dict(setup.ema.module.state_dict())
    _atomic_save(setup.model.state_dict(), folder / "final.pt")
    _atomic_save(state.best_weights, folder / "best.pt")
    summary = summarise(cfg, setup, state, data, score_test)
    _write_json(summary, folder / "summary.json")
    return summary


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(
        "--models",
        nargs="+",
        default=list(study_models()),
        choices=model_names(),
        help="models to train, each with its registered recipe (fmnist.registry)",
    )
    # None: each model's recipe decides; the help shows the study's values.
    p.add_argument(
        "--epochs", type=int, help=f"override the recipe's epochs (study: {STUDY.epochs})"
    )
    p.add_argument(
        "--batch-size",
        type=int,
        help=f"override the recipe's batch size (study: {STUDY.batch_size})",
    )
    p.add_argument(
        "--lr", type=float, help=f"override the recipe's learning rate (study: {STUDY.lr:g})"
    )
    p.add_argument(
        "--seed",
        type=int,
        default=TrainConfig.seed,
        help="seeds the split, initialisation, batch order and augmentation",
    )
    p.add_argument(
        "--limit-batches",
        type=int,
        default=TrainConfig.limit_batches,
        help="quick mode: at most N batches per epoch",
    )
    add_dataset_arguments(p)
    p.add_argument(
        "--download", action="store_true", help="download the dataset when it is nowhere on disk"
    )
    p.add_argument("--out", type=Path, default=ARTIFACTS_DIR, help="output folder")
    p.add_argument(
        "--threads",
        type=int,
        default=TrainConfig.threads,
        help="torch intra-op threads (None: all cores)",
    )
    p.add_argument("--device", default=TrainConfig.device, help="auto, cpu or cuda")
    p.add_argument("--restart", action="store_true", help="discard existing checkpoints")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    if (failed := registry_failure()) is not None:
        return failed
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
