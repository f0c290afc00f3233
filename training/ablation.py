"""What each part of the improved recipe buys, measured on the validation split only.

    python -m training.ablation                      # make ablation: every variant, 20 epochs
    python -m training.ablation --variants recipe no-erasing --epochs 2 --limit-batches 5
    python -m training.ablation --variants cutmix --epochs 60 --out X --results X   # a candidate
    python -m training.ablation --variants wider --epochs 40 --seed 1 --out X --results X
    python -m training.ablation --variants residual sgd --epochs 60 --seed 1 --out X --results X

Each variant is the registered ``improved`` recipe with one part taken back to what the
first improved recipe (``training.recipe.IMPROVED_V1``) did, trained on one seed's split
with a shorter schedule than the recipe's, so that the whole table costs about as much as
one full run. The test set is never scored here (``train_model(score_test=False)``): every
choice this table informs is made on validation accuracy. Weight averaging needs no run of
its own: it does not change training, so the raw weights of the ``recipe`` run *are* the
run without it (``val_acc_raw``). Finished variants are reused, so the command can be
stopped and run again. Writes ``RESULTS/ablation_improved.md`` and ``.json``.

Candidates (:data:`CANDIDATES`) go the other way: each *adds* a part the recipe does not have
(CutMix, a wider network, residual blocks, SGD, distillation), and runs only when named with
``--variants``, usually on the full schedule. The distillation candidate's teacher is the registered
recipe's own run of the same seed (``--full-run``): trained on the same split, so the
validation images stay unseen.
Test-time augmentation needs no run either: the full run's weights are scored on the
validation split with each image also mirrored, logits averaged (``flip-tta``), a choice
that would double the exported graph's cost.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fmnist.contract import ARTIFACTS_DIR, RESULTS_DIR
from fmnist.dataset import DatasetError
from fmnist.markdown import markdown_table
from training.data import add_dataset_arguments, load_datasets
from training.models import build_model, count_parameters
from training.recipe import IMPROVED, IMPROVED_V1, Recipe, registry_failure
from training.train import TrainConfig, flip_tta_val_acc, read_history, run_dir, train_model

MODEL = "improved"
ABLATION_EPOCHS = 20


@dataclass(frozen=True)
class Variant:
    name: str
    what: str
    changes: dict[str, Any]
    fixed: Recipe | None = None  # a whole recipe, on its own schedule, instead of changes
    taught: bool = False  # distilled from the full run of the same seed (--full-run)


# Each takes one part of today's recipe back to the first improved recipe's choice.
VARIANTS: tuple[Variant, ...] = (
    Variant("recipe", "the recipe as registered, on the ablation's schedule", {}),
    Variant(
        "less-erasing",
        f"random erasing in {IMPROVED_V1.erase_p:.0%} of images, not {IMPROVED.erase_p:.0%}",
        {"erase_p": IMPROVED_V1.erase_p},
    ),
    Variant(
        "label-smoothing",
        f"label smoothing {IMPROVED_V1.label_smoothing}, not {IMPROVED.label_smoothing}",
        {"label_smoothing": IMPROVED_V1.label_smoothing},
    ),
    Variant("first-recipe", "the first improved recipe (IMPROVED_V1) as it was", {}, IMPROVED_V1),
)


# Each adds a part to today's recipe; run only when named.
CUTMIX_P = 0.5
DISTILL_WEIGHT, DISTILL_TEMPERATURE = 0.7, 4.0
# Wider where a step is cheapest (blocks 2 and 3, at 14x14 and 7x7), the hidden layer halved
# to stay under a million parameters. JSON values: they are recorded with the run.
WIDER: dict[str, Any] = {"widths": [32, 96, 192], "hidden": 128}
# The same three blocks made residual (a shortcut around each block's two convolutions).
RESIDUAL: dict[str, Any] = {"residual": True}
# SGD with Nesterov momentum instead of AdamW, at the peak learning rate and L2 weight decay
# usual for BatchNorm CNNs at batch 128 (He et al. 2016; Zagoruyko & Komodakis 2016).
SGD: dict[str, Any] = {"optimizer": "sgd", "lr": 0.1, "weight_decay": 5e-4}
CANDIDATES: tuple[Variant, ...] = (
    Variant("cutmix", f"adds CutMix in {CUTMIX_P:.0%} of batches", {"cutmix_p": CUTMIX_P}),
    Variant(
        "wider",
        "widens the network: channels {}-{}-{}, hidden layer {} ({:,} parameters)".format(
            *WIDER["widths"], WIDER["hidden"], count_parameters(build_model(MODEL, WIDER))
        ),
        {"model_args": WIDER},
    ),
    Variant(
        "residual",
        "makes each block residual: a shortcut around its two convolutions, 1x1 where the "
        f"channels change ({count_parameters(build_model(MODEL, RESIDUAL)):,} parameters)",
        {"model_args": RESIDUAL},
    ),
    Variant(
        "sgd",
        "SGD with Nesterov momentum instead of AdamW (peak learning rate {lr:g}, weight "
        "decay {weight_decay:g})".format(**SGD),
        SGD,
    ),
    Variant(
        "distillation",
        f"adds distillation from the full run (weight {DISTILL_WEIGHT}, "
        f"temperature {DISTILL_TEMPERATURE:g})",
        {"distill_weight": DISTILL_WEIGHT, "distill_temperature": DISTILL_TEMPERATURE},
        taught=True,
    ),
)

FULL = Variant("full-schedule", f"the recipe as registered, {IMPROVED.epochs} epochs", {})
FLIP_TTA = Variant(
    "flip-tta",
    "the full run's weights, each image also scored mirrored, logits averaged (2× inference)",
    {},
)


def full_run(out: Path, seed: int) -> dict[str, Any] | None:
    """The summary of the registered recipe's own run of ``seed`` in ``out``, if finished."""
    path = run_dir(out, MODEL) / "summary.json"
    if not path.exists():
        return None
    summary: dict[str, Any] = json.loads(path.read_text())
    wanted = TrainConfig(model=MODEL, recipe=IMPROVED, seed=seed).result_fields()
    return summary if summary["config"] == wanted else None


def variant_recipe(variant: Variant, epochs: int) -> Recipe:
    if variant.fixed is not None:
        return variant.fixed
    return replace(IMPROVED, epochs=epochs, **variant.changes)


def row(variant: Variant, summary: dict[str, Any], recipe: Recipe) -> dict[str, Any]:
    cal = summary["calibration"]["val_after"]
    return {
        "variant": variant.name,
        "what": variant.what,
        "epochs": summary["epochs"],
        "final_val_acc": summary["final_val_acc"],
        "best_val_acc": summary["best_val_acc"],
        "exported_val_acc": summary["exported_val_acc"],
        "val_ece_after_scaling": cal["ece"],
        "train_minutes": summary["train_seconds"] / 60,
        "recipe": recipe.as_dict(),
    }


def ablation_table(
    rows: list[dict[str, Any]], history_raw: float | None, flip_tta: float | None = None
) -> str:
    body = []
    # The deltas are against the recipe's own run on the same schedule: the 20-epoch
    # ``recipe`` row, or the full run when only candidates on the full schedule were run.
    base = next((r for r in rows if r["variant"] == "recipe"), None)
    if base is None:
        base = next((r for r in rows if r["variant"] == FULL.name), None)
    for r in rows:
        delta = (
            f"{100 * (r['exported_val_acc'] - base['exported_val_acc']):+.2f} pp"
            if base is not None and r is not base
            else ""
        )
        body.append(
            [
                r["variant"],
                r["what"],
                str(r["epochs"]),
                f"{100 * r['exported_val_acc']:.2f}%",
                delta,
                f"{100 * r['val_ece_after_scaling']:.2f}%",
                f"{r['train_minutes']:.1f}",
            ]
        )
    if base is not None and history_raw is not None:
        body.insert(
            rows.index(base) + 1,  # beside the run it is read from
            [
                "no-averaging",
                "the recipe run's raw weights (averaging does not change training)",
                str(base["epochs"]),
                f"{100 * history_raw:.2f}%",
                f"{100 * (history_raw - base['exported_val_acc']):+.2f} pp",
                "",
                "",
            ],
        )
    full = next((r for r in rows if r["variant"] == FULL.name), None)
    if full is not None and flip_tta is not None:
        delta = f"{100 * (flip_tta - full['exported_val_acc']):+.2f} pp vs full"
        body.insert(
            rows.index(full) + 1,
            [FLIP_TTA.name, FLIP_TTA.what, str(full["epochs"]), f"{100 * flip_tta:.2f}%", delta]
            + ["", ""],
        )
    header = [
        "variant",
        "what changes",
        "epochs",
        "val accuracy",
        "vs recipe",
        "val ECE after T",
        "minutes",
    ]
    return "### `improved`: ablation on the validation split\n\n" + markdown_table(
        header, body, "llrrrrr"
    )


def main(argv: list[str] | None = None) -> int:
    if (failed := registry_failure()) is not None:
        return failed
    names = [v.name for v in VARIANTS]
    every = {v.name: v for v in (*VARIANTS, *CANDIDATES)}
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(
        "--variants",
        nargs="+",
        default=names,
        choices=list(every),
        help=f"the candidates ({', '.join(v.name for v in CANDIDATES)}) run only when named",
    )
    p.add_argument("--epochs", type=int, default=ABLATION_EPOCHS, help="every variant's schedule")
    p.add_argument("--seed", type=int, default=TrainConfig.seed)
    p.add_argument("--limit-batches", type=int, default=None)
    p.add_argument("--out", type=Path, default=ARTIFACTS_DIR / "ablation")
    p.add_argument("--results", type=Path, default=RESULTS_DIR)
    p.add_argument(
        "--full-run",
        type=Path,
        default=ARTIFACTS_DIR,
        help="where the registered recipe's full-schedule run of this seed is (fmnist-train "
        "--out); its validation figures join the table when it exists",
    )
    add_dataset_arguments(p)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        data = load_datasets(args.data_dir, seed=args.seed, verify=not args.skip_checksums)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows, raw = [], None
    for variant in (every[name] for name in every if name in args.variants):
        recipe = variant_recipe(variant, args.epochs)
        cfg = TrainConfig(
            model=MODEL,
            recipe=recipe,
            seed=args.seed,
            limit_batches=args.limit_batches,
            teacher=run_dir(args.full_run, MODEL) if variant.taught else None,
        )
        try:
            summary = train_model(cfg, data, args.out / variant.name, score_test=False)
        except ValueError as exc:  # e.g. no teacher: the seed's full run is not there
            print(f"error: {variant.name}: {exc}", file=sys.stderr)
            return 2
        rows.append(row(variant, summary, recipe))
        if variant.name == "recipe":
            raw = read_history(args.out / variant.name, MODEL)[-1]["val_acc_raw"]
    full = full_run(args.full_run, args.seed)
    flip_tta = None
    if full is not None:
        rows.insert(0, row(FULL, full, IMPROVED))
        flip_tta = flip_tta_val_acc(run_dir(args.full_run, MODEL), data)
    table = ablation_table(rows, raw, flip_tta)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "ablation_improved.md").write_text(table)
    (args.results / "ablation_improved.json").write_text(
        json.dumps(
            {"seed": args.seed, "raw_val_acc": raw, "flip_tta_val_acc": flip_tta, "variants": rows},
            indent=2,
        )
        + "\n"
    )
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
