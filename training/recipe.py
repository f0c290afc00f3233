"""Training recipes: the study's (plain Adam) and the improved one, and their pieces.

A recipe is data (``Recipe``); the training loop reads it. The study's two models keep the
study's exact recipe; ``improved`` adds what the study's discussion asks for:
augmentation, stronger regularisation, a learning-rate schedule and an average of the
weights, plus temperature scaling fitted on the validation split after training (the first
version, kept as ``IMPROVED_V1``, stopped early on the validation accuracy instead).

:data:`RECIPES` is keyed by recipe name; each registered model names its recipe in
``fmnist.registry`` (:attr:`ModelSpec.recipe`), and :func:`recipe_for` looks it up.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import nn

from fmnist.registry import get_spec, model_names
from training.models import ARCHITECTURES


@dataclass(frozen=True)
class Recipe:
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3  # peak learning rate under the one-cycle schedule
    optimizer: str = "adam"  # adam | adamw | sgd (momentum 0.9, Nesterov)
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant | onecycle
    label_smoothing: float = 0.0
    augment: bool = False  # random crop (pad 2), horizontal flip, random erasing
    erase_p: float = 0.25  # share of augmented images with one rectangle erased
    # CutMix (Yun et al. 2019): the share of batches in which each image gets a rectangle
    # pasted from another image of the batch, its label mixed by the rectangle's area.
    cutmix_p: float = 0.0
    # Knowledge distillation (Hinton et al. 2015) from a teacher run (``TrainConfig.teacher``)
    # that sees the same augmented batch: the loss is (1 - w) * CE + w * tau^2 * KL(teacher
    # || student) at temperature tau. Off (0) unless a teacher is given.
    distill_weight: float = 0.0
    distill_temperature: float = 4.0
    patience: int | None = None  # early stopping: epochs without a better val accuracy
    export_weights: str = "final"  # final | best (best validation accuracy)
    # Exponential moving average of the weights (and BatchNorm statistics), updated after
    # every step; when set, validation, the best/final weights and the export use the
    # average, and each epoch also records the raw weights' validation accuracy.
    ema_decay: float | None = None
    temperature_scaling: bool = False  # fit T on validation, fold it into the export
    # bfloat16 autocast for the training forward pass (weights stay float32; evaluation
    # and export are float32). 2× on a CPU with AVX512-BF16, measured for ``improved``.
    bf16_autocast: bool = False
    # Keyword arguments of the model's class (training.models), e.g. ImprovedCNN's widths,
    # as JSON values (lists, not tuples) so that a run's record compares equal when read
    # back; empty: the class's defaults.
    model_args: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """The recipe as recorded with a run (summary, checkpoint, ONNX metadata): a part the
        recipe does not use is left out, so adding a part leaves the records of the recipes
        without it, and the study's exported files, exactly as they were."""
        fields = asdict(self)
        if not self.augment:
            del fields["erase_p"]
        if self.ema_decay is None:
            del fields["ema_decay"]
        if not self.cutmix_p:
            del fields["cutmix_p"]
        if not self.distill_weight:
            del fields["distill_weight"], fields["distill_temperature"]
        if not self.model_args:
            del fields["model_args"]
        return fields


STUDY = Recipe()
# The first improved recipe (94.11 ± 0.19 % over three seeds); kept as the ablation's
# starting point (training.ablation).
IMPROVED_V1 = Recipe(
    epochs=20,
    batch_size=128,
    lr=3e-3,
    optimizer="adamw",
    weight_decay=5e-4,
    schedule="onecycle",
    label_smoothing=0.1,
    augment=True,
    patience=5,
    export_weights="best",
    temperature_scaling=True,
    bf16_autocast=True,
)
# The improved recipe: every part chosen on the validation split only (the test set is
# never looked at for a choice); docs/results/ablation_improved.md says what each buys.
IMPROVED = replace(
    IMPROVED_V1,
    epochs=60,
    label_smoothing=0.0,
    erase_p=0.5,
    patience=None,
    ema_decay=0.999,
    export_weights="final",
)
# Recipe name (``ModelSpec.recipe``) → recipe.
RECIPES: dict[str, Recipe] = {"study": STUDY, "improved": IMPROVED}


class RegistryError(ValueError):
    """A registered model lacks its architecture or its recipe (or the reverse)."""


def recipe_for(model: str) -> Recipe:
    """The recipe a registered model trains with."""
    spec = get_spec(model)
    try:
        return RECIPES[spec.recipe]
    except KeyError:
        raise RegistryError(
            f"model {model!r} names recipe {spec.recipe!r}, which training.recipe.RECIPES "
            f"lacks; recipes: {', '.join(RECIPES)}"
        ) from None


def registry_failure() -> int | None:
    """For a training CLI's ``main``: None when the registry is whole, else 2 after one line
    on stderr that lists what is missing (:func:`check_registry`)."""
    try:
        check_registry()
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return None


def check_registry() -> None:
    """Every registered model has an architecture and a recipe, and nothing else has one.

    Called at the start of every training CLI, so a half-added model fails in a second
    with the list of what is missing, not after hours of training.
    """
    names = model_names()
    problems = [
        f"{n}: no architecture in training.models.ARCHITECTURES"
        for n in names
        if n not in ARCHITECTURES
    ]
    problems += [
        f"{n}: recipe {get_spec(n).recipe!r} not in training.recipe.RECIPES"
        for n in names
        if get_spec(n).recipe not in RECIPES
    ]
    problems += [
        f"{n}: in training.models.ARCHITECTURES but not registered in fmnist.registry"
        for n in ARCHITECTURES
        if n not in names
    ]
    if problems:
        raise RegistryError("model registry incomplete: " + "; ".join(problems))


def make_optimizer(params: list[nn.Parameter], recipe: Recipe) -> torch.optim.Optimizer:
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "sgd":
        # Momentum 0.9 (the one-cycle schedule cycles it between 0.85 and 0.95), Nesterov's
        # variant; the weight decay is the L2 penalty added to the gradient.
        return torch.optim.SGD(
            params, lr=recipe.lr, momentum=0.9, nesterov=True, weight_decay=recipe.weight_decay
        )
    raise ValueError(f"unknown optimizer {recipe.optimizer!r}; expected adam, adamw or sgd")


def make_scheduler(
    optimizer: torch.optim.Optimizer, recipe: Recipe, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Stepped once per batch; None for a constant learning rate."""
    if recipe.schedule == "constant":
        return None
    if recipe.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=recipe.lr,
            epochs=recipe.epochs,
            steps_per_epoch=steps_per_epoch,
            pct_start=0.25,
            div_factor=25.0,
            final_div_factor=1e3,
        )
    raise ValueError(f"unknown schedule {recipe.schedule!r}; expected constant or onecycle")


def augment_batch(
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    pad: int = 2,
    flip_p: float = 0.5,
    erase_p: float = 0.25,
) -> torch.Tensor:
    """Garment-friendly augmentation of a scaled batch (B, 1, 28, 28), vectorised.

    Random translation by up to ``pad`` pixels (crop of a background-padded image),
    horizontal flip (garments are left-right symmetric; no vertical flip), and random
    erasing of one rectangle to the background value (-1) in a share of the images.
    """
    b, _, h, w = x.shape
    dev = x.device

    def rand(*size: int) -> torch.Tensor:
        return torch.rand(*size, generator=generator).to(dev)

    padded = nn.functional.pad(x, (pad, pad, pad, pad), value=-1.0)  # background is -1
    dy = (rand(b) * (2 * pad + 1)).long()
    dx = (rand(b) * (2 * pad + 1)).long()
    shifted = _crop(padded, dy, dx, h, w)
    flip = rand(b) < flip_p
    shifted = torch.where(flip.view(b, 1, 1, 1), shifted.flip(3), shifted)
    if erase_p > 0:
        erase = rand(b) < erase_p
        eh = (rand(b) * 8 + 4).long()  # 4..11 pixels
        ew = (rand(b) * 8 + 4).long()
        ey = (rand(b) * (h - eh + 1).float()).long()
        ex = (rand(b) * (w - ew + 1).float()).long()
        r = torch.arange(h, device=dev).view(1, h, 1)
        c = torch.arange(w, device=dev).view(1, 1, w)
        box = (
            (r >= ey.view(b, 1, 1))
            & (r < (ey + eh).view(b, 1, 1))
            & (c >= ex.view(b, 1, 1))
            & (c < (ex + ew).view(b, 1, 1))
        )
        box &= erase.view(b, 1, 1)
        shifted = shifted.masked_fill(box.unsqueeze(1), -1.0)
    return shifted


def cutmix_batch(
    x: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """CutMix of a batch (B, C, H, W): each image gets the same rectangle pasted from the
    image ``perm`` points at, the rectangle's area drawn as a share 1 - lam, lam ~ U(0, 1)
    (Beta(1, 1), the paper's choice). Returns the mixed batch, ``perm`` and the exact lam
    of the clipped rectangle; the loss is ``lam * CE(y) + (1 - lam) * CE(y[perm])``."""
    b, _, h, w = x.shape
    perm = torch.randperm(b, generator=generator).to(x.device)
    lam = float(torch.rand((), generator=generator))
    cut = (1.0 - lam) ** 0.5
    ch, cw = int(h * cut), int(w * cut)
    cy, cx = (torch.rand(2, generator=generator) * torch.tensor([h, w])).long().tolist()
    y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
    x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
    mixed = x.clone()
    mixed[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]
    return mixed, perm, 1.0 - (y1 - y0) * (x1 - x0) / (h * w)


def _crop(padded: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Per-image crop ``padded[i, :, dy_i:dy_i+h, dx_i:dx_i+w]`` via unfold-free indexing."""
    b = padded.shape[0]
    dev = padded.device
    rows = dy.view(b, 1, 1) + torch.arange(h, device=dev).view(1, h, 1)  # (B, h, 1)
    cols = dx.view(b, 1, 1) + torch.arange(w, device=dev).view(1, 1, w)  # (B, 1, w)
    batch = torch.arange(b, device=dev).view(b, 1, 1)
    return padded[batch, 0, rows, cols].unsqueeze(1)  # (B, 1, h, w)


def distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, temperature: float
) -> torch.Tensor:
    """tau^2 * KL(softmax(teacher / tau) || softmax(student / tau)), batch mean: the soft
    part of the distillation loss, scaled so that its gradient does not shrink with tau."""
    return (
        nn.functional.kl_div(
            nn.functional.log_softmax(student.float() / temperature, dim=1),
            nn.functional.log_softmax(teacher.float() / temperature, dim=1),
            reduction="batchmean",
            log_target=True,
        )
        * temperature**2
    )


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, steps: int = 200) -> float:
    """The T > 0 minimising the NLL of softmax(logits / T) (Guo et al. 2017), by LBFGS."""
    log_t = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=steps, line_search_fn="strong_wolfe")
    logits = logits.detach().float()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp())
