"""Serving skew: do the service's answers equal the same ONNX file run in-process?"""

from __future__ import annotations

from evaluation.document import Block, Bullets, Section, Table
from evaluation.run import Evaluation


def section(ev: Evaluation) -> Section:
    rows, notes = [], []
    for n, r in ev.models.items():
        s = r.skew
        if s is None:
            notes.append(f"{n}: not checked ({r.skew_note}).")
            continue
        same = {True: "yes", False: "**no**", None: "unknown (no sha256)"}[s.same_file]
        rows.append(
            [
                n,
                same,
                f"{s.images:,}",
                f"{s.argmax_mismatches:,}",
                f"{s.max_abs_prob_diff:.2e}",
                f"{s.mean_abs_prob_diff:.2e}",
                "no skew" if s.ok else "**SKEW**",
            ]
        )
    blocks: list[Block] = [
        "The same ONNX file run in-process with onnxruntime should give the "
        "served answers (up to float rounding in JSON). Any difference means the "
        "service transforms inputs or outputs, or serves another file."
    ]
    if rows:
        blocks.append(
            Table(
                [
                    "model",
                    "same file (sha256)",
                    "images",
                    "different class",
                    "max |Δp|",
                    "mean |Δp|",
                    "verdict",
                ],
                rows,
                "Δp: served minus in-process probability, over all classes.",
            )
        )
    if notes:
        blocks.append(Bullets(notes))
    return Section("Serving skew", blocks)
