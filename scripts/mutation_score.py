"""Mutation score per module from the last `mutmut run` (what `make mutation` prints).

    make mutation                         # runs mutmut, then this
    .venv/bin/python scripts/mutation_score.py [--min 85]

A mutant counts as detected when a test failed (killed) or hung past mutmut's limit
(timeout). Exits 1 when the overall score, or any one module's, is under --min percent
(a module the tests barely reach cannot hide behind well-tested ones), 2 when there is
no run to read. `.venv/bin/mutmut results` lists the survivors, `mutmut show NAME` shows one.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

DETECTED = ("killed", "timeout", "caught by type check")


def count_by_module(mutants: Path) -> dict[str, Counter[str]]:
    """{"fmnist/metrics.py": Counter({"killed": 40, "survived": 3, ...}), ...}"""
    counts: dict[str, Counter[str]] = {}
    for meta in sorted(mutants.rglob("*.py.meta")):
        exit_codes = json.loads(meta.read_text())["exit_code_by_key"]
        if not exit_codes:
            continue
        module = str(meta.relative_to(mutants).with_suffix(""))
        counts[module] = Counter(status_by_exit_code[code] for code in exit_codes.values())
    return counts


def score(counter: Counter[str]) -> float:
    return 100.0 * sum(counter[s] for s in DETECTED) / max(sum(counter.values()), 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mutants", type=Path, default=Path("mutants"), help="mutmut's folder")
    parser.add_argument(
        "--min", type=float, default=85.0, help="least score per module and overall (%%)"
    )
    args = parser.parse_args(argv)
    counts = count_by_module(args.mutants)
    if not counts:
        print(f"error: no mutmut results under {args.mutants}/ (run `make mutation`)")
        return 2
    total: Counter[str] = Counter()
    print(
        f"{'module':<26} {'mutants':>7} {'killed':>6} {'timeout':>7} {'survived':>8} "
        f"{'no tests':>8} {'score':>6}"
    )
    for module, counter in counts.items():
        total += counter
        print(
            f"{module:<26} {sum(counter.values()):>7} {counter['killed']:>6} "
            f"{counter['timeout']:>7} {counter['survived']:>8} {counter['no tests']:>8} "
            f"{score(counter):>5.1f}%"
        )
    print(
        f"{'all':<26} {sum(total.values()):>7} {total['killed']:>6} {total['timeout']:>7} "
        f"{total['survived']:>8} {total['no tests']:>8} {score(total):>5.1f}%"
    )
    low = {module: score(c) for module, c in counts.items() if score(c) < args.min}
    if score(total) < args.min:
        low["all"] = score(total)
    for module, value in low.items():
        print(f"mutation score of {module} {value:.1f}% is under {args.min:g}%")
    return 1 if low else 0


if __name__ == "__main__":
    sys.exit(main())
