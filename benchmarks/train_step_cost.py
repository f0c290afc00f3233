"""What one training step of a registered model costs at several batch sizes, eager and with
``torch.compile``: whether a larger batch or a compiler would buy epochs on this machine.

    .venv/bin/python benchmarks/train_step_cost.py --model improved --batch 128 256 512 --compile
    .venv/bin/python benchmarks/train_step_cost.py --batch 128 --model-args '{"residual": true}'

The step is ``fmnist-train``'s own: ``training.train.train_one_epoch`` with the model's
recipe at the given batch size and what ``set_up`` gives a run (augmentation, optimiser,
schedule, weight average, bf16 autocast, memory format), on random images held in memory;
``--model-args`` times another shape of the model (a recipe's ``model_args``).
Prints a Markdown table: the mean of ``--steps`` timed steps after a warm-up, and the
images per second that gives.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from functools import partial
from typing import Any

import torch

from fmnist.markdown import markdown_table
from fmnist.registry import model_names
from training.train import TrainConfig, set_up, train_one_epoch


def step_seconds(
    model: str, batch: int, compiled: bool, steps: int, model_args: dict[str, Any] | None = None
) -> tuple[float, int]:
    """Seconds per step of ``fmnist-train``'s own loop at batch ``batch`` (module docstring),
    and the parameters of the network it timed."""
    # A schedule long enough for the warm-up and the timed pass (its rates do not change cost).
    cfg = TrainConfig.for_model(
        model, epochs=10, batch_size=batch, limit_batches=steps, model_args=model_args or {}
    )
    torch.manual_seed(0)
    x = torch.rand(steps * batch, 1, 28, 28) * 2 - 1
    y = torch.randint(0, 10, (steps * batch,))
    setup = set_up(cfg, len(x))  # the model, optimiser, schedule and weight average of a run
    net = torch.compile(setup.model) if compiled else setup.model
    run = partial(
        train_one_epoch,
        net,
        setup.optimizer,
        x,
        y,
        channels_last=setup.channels_last,
        scheduler=setup.scheduler,
        ema=setup.ema,
    )
    run(replace(cfg, limit_batches=min(3, steps)), 1)  # warm-up, and the compilation
    start = time.perf_counter()
    run(cfg, 2)
    seconds = (time.perf_counter() - start) / steps
    return seconds, sum(p.numel() for p in setup.model.parameters())


def json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON ({exc}); expected an object") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a JSON object, e.g. '{{\"residual\": true}}'"
        )
    return value


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--model", default="improved", choices=model_names())
    p.add_argument("--batch", nargs="+", type=int, default=[128, 256, 512])
    p.add_argument("--compile", action="store_true", help="also time torch.compile")
    p.add_argument("--steps", type=int, default=30, help="timed steps per row")
    p.add_argument(
        "--model-args",
        type=json_object,
        default={},
        help="the model's keyword arguments as a JSON object (default: the registered shape)",
    )
    args = p.parse_args(argv)
    rows, params = [], 0
    for compiled in (False, True) if args.compile else (False,):
        for batch in args.batch:
            seconds, params = step_seconds(args.model, batch, compiled, args.steps, args.model_args)
            mode = "torch.compile" if compiled else "eager"
            rows.append([mode, str(batch), f"{1e3 * seconds:.1f}", f"{batch / seconds:,.0f}"])
    shape = f" {json.dumps(args.model_args)}" if args.model_args else ""
    print(
        f"`{args.model}`{shape} ({params:,} parameters), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads\n"
    )
    print(markdown_table(["mode", "batch", "ms per step", "images/s"], rows, "lrrr"))


if __name__ == "__main__":
    main()
