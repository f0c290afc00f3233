"""The load test's summary as a Markdown table and a latency-versus-throughput plot.

python -m loadtests.report reports/loadtest/summary.json   # rewrite summary.md + PNG
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmnist.markdown import markdown_table as table
from loadtests.thresholds import AGGREGATED, SINGLE_NAME

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)
PLOT_NAME = "latency_vs_throughput.png"


def _ms(value: float) -> str:
    return "n/a" if value != value else f"{value:.0f}"  # NaN: no requests in that row


def images_per_second(run: dict[str, Any]) -> float:
    """Images the server classified per second of the run (batches count every image)."""
    total = run["rows"][AGGREGATED]
    duration = total["requests"] / total["rps"] if total["rps"] else 0.0
    return run["server"]["images"] / duration if duration else 0.0


def markdown_table(summary: dict[str, Any]) -> str:
    """One line per user count: client-side figures, then the server's own."""
    rows = []
    for run in summary["runs"]:
        rows_of, server = run["rows"], run["server"]
        total = rows_of[AGGREGATED]
        single = rows_of.get(
            SINGLE_NAME, {"p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
        )
        error_rate = total["failures"] / total["requests"] if total["requests"] else 0.0
        rows.append(
            [
                run["users"],
                f"{total['rps']:.1f}",
                f"{images_per_second(run):.0f}",
                f"{_ms(single['p50'])} / {_ms(single['p95'])} / {_ms(single['p99'])}",
                _ms(total["p99"]),
                f"{error_rate:.2%}",
                f"{server['mean_batch']:.1f}",
                f"{server['mean_inference_ms']:.2f}",
            ]
        )
    header = [
        "users",
        "requests/s",
        "images/s (server)",
        "/classify p50 / p95 / p99 ms",
        "all requests p99 ms",
        "error rate",
        "mean batch (server)",
        "mean inference ms (server)",
    ]
    return table(header, rows, align="rrrlrrrr") + "\n"


def users_label(users: int) -> str:
    return f"{users} user" if users == 1 else f"{users} users"


def latency_figure(summary: dict[str, Any]) -> Figure | None:
    """Single-image p50/p95/p99 against images/s served, one point per user count; None
    when no run has single-image requests."""
    runs = [r for r in summary["runs"] if SINGLE_NAME in r["rows"]]
    if not runs:
        return None
    from matplotlib.figure import Figure  # the loadtest extra has it; the plot is optional

    rps = [images_per_second(r) for r in runs]
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for key, style in (("p50", "o-"), ("p95", "s--"), ("p99", "^-")):
        ax.plot(rps, [r["rows"][SINGLE_NAME][key] for r in runs], style, label=f"{key}")
    for r, x in zip(runs, rps, strict=True):
        left = x == min(rps) and len(rps) > 1  # lines leave the leftmost point to the right
        ax.annotate(
            users_label(r["users"]),
            (x, r["rows"][SINGLE_NAME]["p99"]),
            textcoords="offset points",
            xytext=(-7 if left else 7, 0),
            ha="right" if left else "left",
            va="center",
            fontsize=8,
        )
    # Room inside the axes for the labels beside the outermost points.
    ax.margins(x=0.2, y=0.1)
    ax.set_xlabel("throughput: images classified per second (server, all requests)")
    ax.set_ylabel("single-image latency (POST /classify) [ms]")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(title="percentile", loc="lower right")
    ax.set_title("Latency versus throughput (locust, closed loop)")
    return fig


def plot_latency_vs_throughput(summary: dict[str, Any], path: Path) -> Path | None:
    """:func:`latency_figure` as a PNG at ``path`` (None, and no file, without one)."""
    try:
        fig = latency_figure(summary)
    except ImportError:
        log.warning("matplotlib is not installed; no %s", path.name)
        return None
    if fig is None:
        return None
    fig.savefig(path, dpi=120)
    return path


def write_report(summary: dict[str, Any], out: Path) -> None:
    env = summary.get("environment", {})
    header = (
        f"Load test of {summary.get('started', '?')}: {env.get('cpu', '?')}, "
        f"{env.get('cores', '?')} cores; versions {env.get('versions', {})}; "
        f"settings {env.get('settings', {}) or 'defaults'}; "
        f"training job running: {env.get('training_job_running', '?')}; "
        f"locust args {summary.get('locust_args') or 'defaults'}.\n\n"
    )
    (out / "summary.md").write_text(header + markdown_table(summary))
    plot_latency_vs_throughput(summary, out / PLOT_NAME)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m loadtests.report SUMMARY_JSON", file=sys.stderr)
        return 2
    path = Path(args[0])
    write_report(json.loads(path.read_text()), path.parent)
    print((path.parent / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
