"""Evaluate the live classification service on the Fashion-MNIST test set.

    fmnist-eval --url http://127.0.0.1:3000 --out reports/eval
    fmnist-eval --url http://127.0.0.1:3000 --out /tmp/quick --limit 1000 --models baseline
    fmnist-eval --url http://127.0.0.1:3000 --out reports/gate --gate baseline   # the gate

Evaluates every model the service lists in ``GET /models`` (or those named with
--models) and compares every pair of them (exact McNemar test, paired bootstrap). Sends
the test images to ``POST /classify_npy``, scores what comes back, checks it against the
same ONNX files run in-process (``--onnx-dir``), and writes OUT/report.html (one
self-contained file), report.md, metrics.json, predictions.csv and PNG figures.

OUT appears complete or not at all: the report is written into a fresh folder next to OUT
and renamed into place at the end, so a failed run leaves an earlier report in OUT as it
was (and says so). A request that fails (no connection, no answer within --timeout, HTTP
502/503/504) is tried again, each retry logged as a WARNING, up to --retries tries in all
and --retry-for seconds: with the defaults, a service that accepts connections but never
answers is given up on after about 30 seconds.

Exit status: 0 done; 1 the service failed (unreachable after retries, refused a request,
or broke the contract); 2 bad input (dataset missing, OUT not writable); 130 interrupted.

With ``--gate NAME`` it is the promotion gate (evaluation/gate.py): the test set goes to
NAME@production and NAME@candidate, the report opens with a "Gate" section, and the exit
status is the decision: 0 promote, 1 reject, 2 could not decide (the service failed or
lacks a candidate, too few images, bad input).
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from evaluation.client import RetryPolicy, ServiceError
from evaluation.gate import GateRule
from evaluation.report import ReportError, earlier_report, write_report
from evaluation.run import EvalConfig, evaluate
from fmnist.dataset import DatasetError

DEFAULTS = EvalConfig(url="", out=Path())  # every --flag's default is the config's


def parse_args(argv: list[str] | None) -> EvalConfig:
    d = DEFAULTS
    p = argparse.ArgumentParser(
        prog="fmnist-eval",
        description=__doc__.split("\n\n")[0],
        epilog="A failed request (no connection, no answer within --timeout, HTTP "
        "502/503/504) is tried again, each retry logged as a WARNING, up to --retries tries "
        "in all and --retry-for seconds. With the defaults, a service that accepts "
        f"connections but never answers is given up on after about {d.retry.deadline:g} "
        "seconds. OUT is replaced only by a complete report; a failed run leaves an "
        "earlier one as it was and says so.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--url", required=True, help="service base URL, e.g. http://127.0.0.1:3000")
    p.add_argument("--out", type=Path, required=True, help="report folder (replaced atomically)")
    p.add_argument(
        "--models",
        nargs="+",
        default=argparse.SUPPRESS,
        help="models to evaluate (default: every model the service lists in GET /models)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=d.data_dir,
        help="folder with the IDX files (default: $FMNIST_DATA_DIR, Debian, cache)",
    )
    p.add_argument(
        "--onnx-dir",
        type=Path,
        default=d.onnx_dir,
        help="local MODEL.onnx files for the serving-skew check",
    )
    p.add_argument("--limit", type=int, default=d.limit, help="only the first N test images")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="images per request")
    p.add_argument("--concurrency", type=int, default=d.concurrency, help="requests in flight")
    p.add_argument(
        "--timeout", type=float, default=d.timeout, help="seconds one try of a request may take"
    )
    p.add_argument(
        "--retries",
        type=int,
        default=d.retry.attempts,
        help="tries per request on connection errors, timeouts and 502/503/504",
    )
    p.add_argument(
        "--retry-for",
        type=float,
        default=d.retry.deadline,
        metavar="SECONDS",
        help="most seconds one request may take, all its tries and waits included: how long "
        "a service that accepts connections but never answers is waited for",
    )
    p.add_argument(
        "--backoff",
        type=float,
        default=d.retry.backoff,
        help="first wait between tries in seconds; doubles each time, "
        f"at most {d.retry.max_backoff:g}",
    )
    p.add_argument(
        "--skip-checksums",
        action="store_true",
        help="accept test files whose md5 differs from the official ones (synthetic data; "
        "the report says so)",
    )
    # The old name of --skip-checksums, kept working for existing scripts.
    p.add_argument("--no-verify", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--seed", type=int, default=d.seed, help="bootstrap seed")
    g, rule = (
        p.add_argument_group("promotion gate (exit 0 promote, 1 reject, 2 undecided)"),
        d.gate_rule,
    )
    g.add_argument(
        "--gate",
        metavar="NAME",
        default=None,
        help="decide whether NAME@candidate may replace NAME@production (evaluation/gate.py)",
    )
    g.add_argument(
        "--accuracy-margin",
        type=float,
        default=rule.accuracy_margin * 100,
        metavar="PP",
        help="non-inferiority margin on accuracy, percentage points",
    )
    g.add_argument(
        "--ece-margin",
        type=float,
        default=rule.ece_margin * 100,
        metavar="PP",
        help="how much worse the candidate's ECE may be, percentage points",
    )
    g.add_argument(
        "--hardest-class-margin",
        type=float,
        default=rule.hardest_class_margin * 100,
        metavar="PP",
        help="how much the candidate may lose on production's hardest class, percentage points",
    )
    g.add_argument(
        "--agreement-floor",
        type=float,
        default=rule.agreement_floor,
        help="least share of shadowed images predicted alike (when there are enough)",
    )
    g.add_argument(
        "--min-images",
        type=int,
        default=rule.min_images,
        help="fewer labelled images than this: undecided (exit 2)",
    )
    g.add_argument(
        "--min-shadow-images",
        type=int,
        default=rule.min_shadow_images,
        help="shadowed images needed before live agreement counts",
    )
    a = p.parse_args(argv)
    for flag, seconds in (("--timeout", a.timeout), ("--retry-for", a.retry_for)):
        if not seconds > 0:
            p.error(f"{flag} must be more than 0 seconds, got {seconds:g}")
    for flag, value in (
        ("--batch-size", a.batch_size),
        ("--concurrency", a.concurrency),
        ("--retries", a.retries),
        ("--limit", a.limit),
    ):
        if value is not None and value < 1:
            p.error(f"{flag} must be at least 1, got {value}")
    if a.no_verify:
        print("fmnist-eval: --no-verify is deprecated; use --skip-checksums", file=sys.stderr)
    return EvalConfig(
        url=a.url,
        out=a.out,
        models=tuple(dict.fromkeys(getattr(a, "models", d.models))),
        data_dir=a.data_dir,
        onnx_dir=a.onnx_dir,
        limit=a.limit,
        batch_size=a.batch_size,
        concurrency=a.concurrency,
        timeout=a.timeout,
        retry=RetryPolicy(
            attempts=a.retries,
            backoff=a.backoff,
            max_backoff=d.retry.max_backoff,
            deadline=a.retry_for,
        ),
        verify=not (a.skip_checksums or a.no_verify),
        progress=not a.no_progress,
        seed=a.seed,
        gate=a.gate,
        gate_rule=GateRule(
            accuracy_margin=a.accuracy_margin / 100,
            ece_margin=a.ece_margin / 100,
            hardest_class_margin=a.hardest_class_margin / 100,
            agreement_floor=a.agreement_floor,
            min_images=a.min_images,
            min_shadow_images=a.min_shadow_images,
        ),
    )


def left_behind(out: Path) -> str:
    """What a failed run leaves in ``out``, so that nobody takes it for this run's report."""
    created = earlier_report(out)
    if created is None:
        return "no report written"
    return f"no report written: {out} still holds the earlier report of {created}"


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    command = shlex.join(["fmnist-eval", *(sys.argv[1:] if argv is None else argv)])
    try:
        ev = evaluate(cfg, command)
        out = write_report(ev, cfg.out)
    except KeyboardInterrupt:
        print(f"fmnist-eval: interrupted; {left_behind(cfg.out)}", file=sys.stderr)
        return 130
    except (DatasetError, ReportError, OSError) as exc:
        print(f"fmnist-eval: error: {exc}; {left_behind(cfg.out)}", file=sys.stderr)
        return 2
    except ServiceError as exc:
        print(f"fmnist-eval: error: {exc}; {left_behind(cfg.out)}", file=sys.stderr)
        if cfg.gate is not None:
            print(f"fmnist-eval: gate {cfg.gate}: undecided (exit 2)", file=sys.stderr)
            return 2  # a service that fails decides nothing: never a reject
        return 1
    for name, r in ev.models.items():
        acc = r.metrics.accuracy
        print(
            f"{name}: accuracy {acc.estimate:.2%} [{acc.low:.2%}, {acc.high:.2%}], "
            f"{r.served.images_per_second:,.0f} images/s"
        )
    for c in ev.comparisons:
        print(
            f"{c.model_a} vs {c.model_b}: McNemar p = {c.p_value:.3g}, agreement {c.agreement:.2%}"
        )
    print(f"report: {out / 'report.html'}")
    if ev.gate is not None:
        d = ev.gate
        print(f"gate {d.model}: {d.verdict} (exit {d.exit_code}): {d.reason}")
        for check in d.checks:
            result = {True: "pass", False: "FAIL", None: "n/a"}[check.passed]
            print(
                f"  {result:4} {check.name}: production {check.production}, "
                f"candidate {check.candidate}"
            )
        return d.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
