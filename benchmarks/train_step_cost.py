"""What one training step of a registered model costs at several batch sizes, eager and with
``torch.compile``: whether a larger batch or a compiler would buy epochs on this machine.

    .venv/bin/python benchmarks/train_step_cost.py --model improved --batch 128 256 512 --compile

The step is the recipe's: its optimiser, bf16 autocast and memory format when the recipe
and architecture use them, on one fixed random batch (the data loading is not timed; see
``benchmarks/train_throughput.py`` for the whole loop). Prints a Markdown table: the median
of ``--steps`` timed steps after a warm-up, and the images per second that gives.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from fmnist.markdown import markdown_table
from fmnist.registry import model_names
from training.models import build_model, channels_last_on_cpu
from training.recipe import make_optimizer, recipe_for


def step_seconds(model: str, batch: int, compiled: bool, steps: int) -> float:
    """Median seconds of one optimiser step of ``model``'s recipe on a ``batch``-image batch."""
    recipe = recipe_for(model)
    torch.manual_seed(0)
    net = build_model(model).train()
    channels_last = channels_last_on_cpu(model)
    x = torch.randn(batch, 1, 28, 28)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    optimizer = make_optimizer(list(net.parameters()), recipe)
    forward = torch.compile(net) if compiled else net

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=recipe.bf16_autocast):
            loss = nn.functional.cross_entropy(forward(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3):  # warm-up, and the compilation
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--model", default="improved", choices=model_names())
    p.add_argument("--batch", nargs="+", type=int, default=[128, 256, 512])
    p.add_argument("--compile", action="store_true", help="also time torch.compile")
    p.add_argument("--steps", type=int, default=30, help="timed steps per row")
    args = p.parse_args(argv)
    rows = []
    for compiled in (False, True) if args.compile else (False,):
        for batch in args.batch:
            seconds = step_seconds(args.model, batch, compiled, args.steps)
            mode = "torch.compile" if compiled else "eager"
            rows.append([mode, str(batch), f"{1e3 * seconds:.1f}", f"{batch / seconds:,.0f}"])
    print(f"`{args.model}`, torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print(markdown_table(["mode", "batch", "ms per step", "images/s"], rows, "lrrr"))


if __name__ == "__main__":
    main()
