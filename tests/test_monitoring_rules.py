"""deploy/monitoring/rules.yaml through the real promtool: valid, its unit tests pass, every
alert is tested both ways and has a runbook entry, and the unit tests catch broken rules."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parent.parent
MONITORING = REPO / "deploy" / "monitoring"
RULES = MONITORING / "rules.yaml"
RULE_TESTS = MONITORING / "tests" / "rules_test.yaml"
OPERATIONS = REPO / "docs" / "operations.md"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

pytestmark = pytest.mark.skipif(
    not Path(PROMTOOL).exists(), reason="promtool (Debian package prometheus) is not installed"
)


def promtool(*args: str | Path, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROMTOOL, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def alerts() -> dict[str, dict[str, Any]]:
    rules = yaml.safe_load(RULES.read_text())
    return {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}


def test_promtool_checks_the_rules() -> None:
    done = promtool("check", "rules", RULES)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_unit_tests_pass() -> None:
    done = promtool("test", "rules", RULE_TESTS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_is_tested_firing_and_silent() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    firing: set[str] = set()
    silent: set[str] = set()
    for group in tests:
        for case in group.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else silent).add(case["alertname"])
    assert set(alerts()) == firing == silent


def test_every_alert_has_labels_annotations_and_a_runbook_entry() -> None:
    doc = OPERATIONS.read_text()
    headings = {m.group(1) for m in re.finditer(r"^### (Fmnist\w+)\s*$", doc, flags=re.MULTILINE)}
    for name, rule in alerts().items():
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), name
        # GitHub's anchor of "### FmnistX" is "#fmnistx".
        assert rule["annotations"]["runbook_url"] == f"docs/operations.md#{name.lower()}"
        assert name in headings, f"docs/operations.md has no '### {name}' runbook entry"
    assert headings == set(alerts()), "runbook entries for alerts that do not exist"


# Broken rules the unit tests must catch: (what is broken, text in rules.yaml, replacement).
MUTANTS = [
    ("fast availability burn at 10x", "> (14.4 * 0.001)", "> (10 * 0.001)"),
    ("slow availability burn at 0.6x", "> (6 * 0.001)", "> (0.6 * 0.001)"),
    ("latency at 500 ms", 'le="0.25"', 'le="0.5"'),
    ("fast latency burn at 30x", "> (14.4 * 0.01)", "> (30 * 0.01)"),
    ("4xx counted as errors", 'http_response_code=~"5.."', 'http_response_code=~"[45].."'),
    ("shed threshold 5 %", "fmnist:shed_requests:ratio_rate5m > 0.01", "x > 0.05"),
    ("drift threshold 0.95", "fmnist:predicted_class_tvd:rate30m > 0.2", "x > 0.95"),
    ("drift without the minimum traffic", ">= 200", ">= 50"),
    (
        "drift ignoring classes never predicted",
        "or on (model, class_name)",
        "and on (model, class_name)",
    ),
    ("low confidence threshold 30 %", "fmnist:low_confidence:ratio_rate30m > 0.1", "x > 0.3"),
    (
        "model missing: only models gone everywhere",
        "< on () group_left ()",
        "< on () group_left () 0 *",
    ),
    ("model missing: forgets at once", "max_over_time(fmnist_model_info[1h])", "fmnist_model_info"),
    ("target down without absent()", ' or absent(up{job="fmnist-service"})', ""),
    ("target down for any job", 'up{job="fmnist-service"} == 0', "up == 0"),
    ("worker stalled on idle pods too", "[10m])) > 1", "[10m])) >= 0"),
    ("agreement floor 50 %", "fmnist:shadow_agreement:ratio_rate30m < 0.9", "x < 0.5"),
    (
        "agreement without the minimum traffic",
        "(increase(fmnist_shadow_predictions_total[30m])) >= 200",
        "(increase(fmnist_shadow_predictions_total[30m])) >= 0",
    ),
    ("agreement counting disagreements", '{agreement="agree"}', '{agreement=~".+"}'),
    ("aliases: applied reloads warn too", 'result="rejected"}', 'result=~".+"}'),
]


@pytest.mark.slow  # ~2 s of promtool each
@pytest.mark.parametrize(
    ("what", "old", "new"), MUTANTS, ids=[m[0].replace(" ", "-") for m in MUTANTS]
)
def test_the_unit_tests_catch_a_broken_rule(tmp_path: Path, what: str, old: str, new: str) -> None:
    text = RULES.read_text()
    assert old in text, f"mutant {what!r}: {old!r} is not in rules.yaml any more"
    if new.startswith("x "):  # replace a whole comparison, keeping the recorded metric name
        new = old.split(" ")[0] + new[1:]
    (tmp_path / "tests").mkdir()
    (tmp_path / "rules.yaml").write_text(text.replace(old, new))
    shutil.copy(RULE_TESTS, tmp_path / "tests" / RULE_TESTS.name)
    assert promtool("check", "rules", tmp_path / "rules.yaml").returncode == 0, what
    done = promtool("test", "rules", tmp_path / "tests" / RULE_TESTS.name)
    assert done.returncode != 0, f"the unit tests did not notice: {what}"
