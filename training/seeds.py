"""Train one model with several seeds and report mean ± standard deviation.

    python -m training.seeds --model improved --seeds 42 1 2      # make seeds

Each seed is an ordinary ``fmnist-train`` run (its own split, order, augmentation and
initialisation) in ``OUT/seeds/seed-N``; finished seeds are reused, so the command can be
stopped and run again. Writes ``RESULTS/seeds_MODEL.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
from pathlib import Path
from typing import Any

from fmnist.contract import ARTIFACTS_DIR, RESULTS_DIR
from fmnist.dataset import CLASS_NAMES, NUM_CLASSES, DatasetError
from fmnist.markdown import markdown_table
from fmnist.registry import beyond_study, model_names
from training.data import add_dataset_arguments, load_datasets
from training.recipe import registry_failure
from training.train import TrainConfig, flip_tta_val_acc, read_history, run_dir, train_model

KEYS = (
    ("test_acc", "test accuracy", 100, "%"),
    ("best_val_acc", "best validation accuracy", 100, "%"),
    ("exported_val_acc", "validation accuracy, exported weights", 100, "%"),
    # Horizontal-flip test-time augmentation, measured on validation only: what it would
    # buy, at twice the exported graph's cost (not in the graph).
    ("flip_tta_val_acc", "… each image also scored mirrored", 100, "%"),
    ("epochs", "epochs run", 1, ""),
    ("temperature", "temperature", 1, ""),
    ("test_ece_before", "test ECE before scaling", 100, "%"),
    ("test_ece_after", "test ECE after scaling", 100, "%"),
    ("train_minutes", "training time (min)", 1, ""),
    # The sum above counts any time the run was paused or shared the cores; the median
    # epoch does not.
    ("median_epoch_seconds", "median epoch (s)", 1, ""),
)


def flatten(
    summary: dict[str, Any], history: list[dict[str, Any]], flip_tta_val_acc: float
) -> dict[str, Any]:
    cal = summary["calibration"]
    return {
        "test_acc": summary["test_acc"],
        "test_class_acc": summary["test_class_acc"],
        "best_val_acc": summary["best_val_acc"],
        "exported_val_acc": summary["exported_val_acc"],
        "flip_tta_val_acc": flip_tta_val_acc,
        "epochs": summary["epochs"],
        "temperature": summary["temperature"],
        "test_ece_before": cal["test_before"]["ece"],
        "test_ece_after": cal["test_after"]["ece"],
        "train_minutes": summary["train_seconds"] / 60,
        "median_epoch_seconds": statistics.median(r["seconds"] for r in history),
    }


def row(label: str, values: list[float], unit: str) -> list[str]:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return [
        label,
        *(f"{v:.2f}{unit}" for v in values),
        f"{statistics.mean(values):.2f} ± {std:.2f}{unit}",
    ]


def hardest_class(rows: dict[int, dict[str, Any]]) -> int:
    """The label with the lowest test accuracy, averaged over the seeds."""
    return min(
        range(NUM_CLASSES),
        key=lambda c: statistics.mean(r["test_class_acc"][c] for r in rows.values()),
    )


def seed_table(model: str, rows: dict[int, dict[str, Any]]) -> str:
    seeds = sorted(rows)
    lines = [
        row(label, [rows[s][key] * scale for s in seeds], unit) for key, label, scale, unit in KEYS
    ]
    worst = hardest_class(rows)  # below the test accuracy: a goal of its own (Shirt)
    worst_values = [100 * rows[s]["test_class_acc"][worst] for s in seeds]
    lines.insert(1, row(f"{CLASS_NAMES[worst]} accuracy (the hardest class)", worst_values, "%"))
    table = markdown_table(
        ["", *(f"seed {s}" for s in seeds), "mean ± std"], lines, "l" + "r" * (len(seeds) + 1)
    )
    return f"### `{model}` over {len(seeds)} seeds\n\n{table}\n"


def main(argv: list[str] | None = None) -> int:
    if (failed := registry_failure()) is not None:
        return failed
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(
        "--model",
        default=beyond_study()[0],
        choices=model_names(),
        help="default: the first registered model beyond the study",
    )
    # The main run's seed first: its run in OUT/runs is reused.
    p.add_argument("--seeds", nargs="+", type=int, default=[TrainConfig.seed, 1, 2])
    p.add_argument("--out", type=Path, default=ARTIFACTS_DIR)
    p.add_argument("--results", type=Path, default=RESULTS_DIR)
    add_dataset_arguments(p)
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    p.add_argument("--limit-batches", type=int, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    rows: dict[int, dict[str, Any]] = {}
    for seed in args.seeds:
        try:
            data = load_datasets(args.data_dir, seed=seed, verify=not args.skip_checksums)
        except DatasetError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        cfg = TrainConfig.for_model(
            args.model, seed=seed, epochs=args.epochs, limit_batches=args.limit_batches
        )
        # The main run's seed: reuse OUT/runs rather than train it twice.
        out = args.out if seed == TrainConfig.seed else args.out / "seeds" / f"seed-{seed}"
        summary = train_model(cfg, data, out)
        tta = flip_tta_val_acc(run_dir(out, args.model), data)
        rows[seed] = flatten(summary, read_history(out, args.model), tta)
        print(f"{args.model} seed {seed}: test {100 * rows[seed]['test_acc']:.2f} %", flush=True)
    table = seed_table(args.model, rows)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"seeds_{args.model}.md").write_text(table)
    (args.results / f"seeds_{args.model}.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
