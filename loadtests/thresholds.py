"""Pass/fail targets of a load test, checked on locust's ``<prefix>_stats.csv``.

    python -m loadtests.thresholds reports/loadtest/run_stats.csv --p99-ms 100 --min-rps 50

Targets (docs/performance.md): no failed request at all (a bad request answered with its
4xx is a success, see the locustfile), the single-image p99 (row ``/classify``) at or
under ``--p99-ms``, and total requests/s at or above ``--min-rps``. Exits 1 when a target
is missed, 2 when the CSV cannot be read.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

AGGREGATED = "Aggregated"
SINGLE_NAME = "/classify"


@dataclass(frozen=True)
class StatsRow:
    """One row of locust's stats CSV (times in ms)."""

    name: str
    requests: int
    failures: int
    rps: float
    p50: float
    p95: float
    p99: float
    max: float


@dataclass(frozen=True)
class Thresholds:
    max_error_rate: float = 0.0
    p99_ms: float = 100.0
    min_rps: float = 0.0
    p99_name: str = SINGLE_NAME


@dataclass(frozen=True)
class Check:
    what: str
    value: float
    limit: str
    ok: bool

    def __str__(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'}  {self.what} = {self.value:.4g} ({self.limit})"


def _number(text: str) -> float:
    # locust writes "N/A" for percentiles of a row without requests.
    try:
        return float(text)
    except ValueError:
        return float("nan")


def read_stats_csv(path: str | Path) -> dict[str, StatsRow]:
    """Rows by name (``Aggregated`` included); raises ValueError on a malformed file."""
    rows: dict[str, StatsRow] = {}
    with open(path, newline="") as f:
        for record in csv.DictReader(f):
            try:
                row = StatsRow(
                    name=record["Name"],
                    requests=int(record["Request Count"]),
                    failures=int(record["Failure Count"]),
                    rps=float(record["Requests/s"]),
                    p50=_number(record["50%"]),
                    p95=_number(record["95%"]),
                    p99=_number(record["99%"]),
                    max=_number(record["Max Response Time"]),
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path}: not a locust stats CSV ({exc!r})") from exc
            rows[row.name] = row
    if AGGREGATED not in rows:
        raise ValueError(f"{path}: no {AGGREGATED!r} row (is it locust's *_stats.csv?)")
    return rows


def check_thresholds(rows: dict[str, StatsRow], limits: Thresholds) -> list[Check]:
    """Every target as a :class:`Check`; the run passes when all are ``ok``."""
    total = rows[AGGREGATED]
    checks = [Check("requests", total.requests, "> 0", total.requests > 0)]
    error_rate = total.failures / total.requests if total.requests else 1.0
    checks.append(
        Check(
            "error rate",
            error_rate,
            f"<= {limits.max_error_rate}",
            error_rate <= limits.max_error_rate,
        )
    )
    single = rows.get(limits.p99_name)
    p99 = single.p99 if single is not None else float("nan")
    # NaN (no such row, or no requests in it) compares False: a missing row fails.
    checks.append(
        Check(f"p99 of {limits.p99_name} [ms]", p99, f"<= {limits.p99_ms}", p99 <= limits.p99_ms)
    )
    checks.append(
        Check(
            "throughput [requests/s]",
            total.rps,
            f">= {limits.min_rps}",
            total.rps >= limits.min_rps,
        )
    )
    return checks


def add_threshold_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = Thresholds()
    parser.add_argument(
        "--max-error-rate",
        type=float,
        default=defaults.max_error_rate,
        help="largest share of failed requests (default: %(default)s)",
    )
    parser.add_argument(
        "--p99-ms",
        type=float,
        default=defaults.p99_ms,
        help="single-image p99 target in ms (default: %(default)s)",
    )
    parser.add_argument(
        "--min-rps",
        type=float,
        default=defaults.min_rps,
        help="smallest total requests/s (default: %(default)s)",
    )
    parser.add_argument(
        "--p99-name",
        default=defaults.p99_name,
        help="locust row the p99 target applies to (default: %(default)s)",
    )


def thresholds_from(args: argparse.Namespace) -> Thresholds:
    return Thresholds(args.max_error_rate, args.p99_ms, args.min_rps, args.p99_name)


def evaluate(stats_csv: str | Path, limits: Thresholds) -> tuple[bool, list[Check]]:
    checks = check_thresholds(read_stats_csv(stats_csv), limits)
    return all(c.ok for c in checks), checks


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stats_csv", type=Path, help="locust's <prefix>_stats.csv")
    add_threshold_arguments(parser)
    args = parser.parse_args(argv)
    try:
        passed, checks = evaluate(args.stats_csv, thresholds_from(args))
    except (OSError, ValueError) as exc:
        print(f"thresholds: {exc}", file=sys.stderr)
        return 2
    for check in checks:
        print(check)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
