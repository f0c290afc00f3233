"""Every registered model's architecture, as a pure ``nn.Module``, and the table that
maps a registry name (``fmnist.registry``) to its class.

The study's two CNNs (``baseline``, ``deeper``) and the ``improved`` CNN beyond the study.
Each takes images already scaled to [-1, 1], shape (B, 1, 28, 28), and returns logits
(B, 10). Adding a model: a class here, an entry in :data:`ARCHITECTURES`, one in
``fmnist.registry`` and a recipe in ``training.recipe`` (README, "Adding a model").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from fmnist.registry import model_names


class BaselineCNN(nn.Module):
    """conv32 → pool → conv64 → pool → fc128 → dropout 0.5 → ReLU → fc10 (421,642 params)."""

    # Measured on the 2-core CPU (benchmarks/train_throughput.py): channels-last memory
    # format slows this model's small convolutions down, so it trains in NCHW.
    channels_last_on_cpu: ClassVar[bool] = False

    def __init__(self, num_classes: int = 10, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),  # (B, 32, 28, 28)
            nn.ReLU(),
            nn.MaxPool2d(2),  # (B, 32, 14, 14)
            nn.Conv2d(32, 64, 3, padding=1),  # (B, 64, 14, 14)
            nn.ReLU(),
            nn.MaxPool2d(2),  # (B, 64, 7, 7)
        )
        # The study puts dropout *before* the ReLU in the baseline head; kept as written.
        self.classifier = nn.Sequential(
            nn.Flatten(),  # (B, 3136)
            nn.Linear(64 * 7 * 7, 128),
            nn.Dropout(dropout),
            nn.ReLU(),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class DeeperCNN(nn.Module):
    """Baseline's two blocks + conv128 (no pool) → fc256 → ReLU → dropout → fc10 (1,701,130)."""

    channels_last_on_cpu: ClassVar[bool] = True  # helps its 128-channel conv (measured)

    def __init__(self, num_classes: int = 10, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # (B, 32, 14, 14)
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # (B, 64, 7, 7)
            nn.Conv2d(64, 128, 3, padding=1),  # (B, 128, 7, 7)
            nn.ReLU(),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),  # (B, 6272)
            nn.Linear(128 * 7 * 7, 256),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(256, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and a shortcut around them (He et al. 2016):
    relu(bn(conv(relu(bn(conv(x))))) + shortcut(x)), the shortcut a 1x1 convolution with
    BatchNorm where the channels change, else the identity. Keeps the spatial size."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *conv_bn_relu(c_in, c_out),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut: nn.Module = (
            nn.Identity()
            if c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
        )
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class ImprovedCNN(nn.Module):
    """Beyond the study: three VGG-style blocks with BatchNorm (under 2 M parameters).

    Trained with its own recipe (training.recipe.IMPROVED): augmentation, AdamW, a one-cycle
    schedule, an exponential moving average of the weights; temperature-scaled at export.
    ``widths`` are the three blocks' channels and ``hidden`` the classifier's hidden layer;
    ``residual`` makes each block's two convolutions a residual block (:class:`ResidualBlock`,
    He et al. 2016). A recipe may set them (``Recipe.model_args``), and the defaults are the
    registered shape.
    """

    channels_last_on_cpu: ClassVar[bool] = True

    def __init__(
        self,
        num_classes: int = 10,
        dropout: float = 0.3,
        widths: Sequence[int] = (32, 64, 128),
        hidden: int = 256,
        residual: bool = False,
    ) -> None:
        super().__init__()
        a, b, c = widths

        def block(c_in: int, c_out: int) -> list[nn.Module]:
            """A block's two convolutions, plain or with a shortcut around them."""
            if residual:
                return [ResidualBlock(c_in, c_out)]
            return [*conv_bn_relu(c_in, c_out), *conv_bn_relu(c_out, c_out)]

        self.features = nn.Sequential(
            *block(1, a),  # (B, a, 28, 28)
            nn.MaxPool2d(2),  # (B, a, 14, 14)
            *block(a, b),
            nn.MaxPool2d(2),  # (B, b, 7, 7)
            *block(b, c),
            nn.MaxPool2d(2),  # (B, c, 3, 3)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),  # (B, 9c)
            nn.Dropout(dropout),
            nn.Linear(c * 3 * 3, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


# Registry name → architecture. ``training.recipe.check_registry`` holds this table and
# the recipes against ``fmnist.registry`` at every CLI's start.
ARCHITECTURES: dict[str, type[nn.Module]] = {
    "baseline": BaselineCNN,
    "deeper": DeeperCNN,
    "improved": ImprovedCNN,
}


def architecture(name: str) -> type[nn.Module]:
    """The class of a registered model."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(
            f"no architecture for model {name!r} in training.models.ARCHITECTURES; "
            f"registered models: {', '.join(model_names())}"
        ) from None


def build_model(name: str, model_args: Mapping[str, Any] | None = None) -> nn.Module:
    """A freshly initialised network (draws from torch's global RNG); ``model_args`` are
    keyword arguments of its class (a recipe's ``model_args``, a run's recorded config)."""
    cls = architecture(name)
    try:
        return cls(**(model_args or {}))
    except TypeError as exc:
        raise ValueError(f"model {name!r} ({cls.__name__}): {exc}") from None


def run_model(summary: Mapping[str, Any]) -> nn.Module:
    """A fresh network of a finished run's shape (its ``summary.json``): its model, with the
    architecture arguments its recipe recorded (``model_args``), ready for its weights; a
    record without them (or without a config) is of the class's default shape."""
    return build_model(summary["model"], summary.get("config", {}).get("model_args"))


def channels_last_on_cpu(name: str) -> bool:
    """Whether the model trains faster in channels-last memory format on a CPU.

    A class attribute of the architecture; a class without one trains in NCHW.
    """
    return bool(getattr(architecture(name), "channels_last_on_cpu", False))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def conv_layers(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]
