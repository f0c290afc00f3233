"""Write deploy/monitoring/operator/prometheusrule.yaml from deploy/monitoring/rules.yaml.

    python scripts/monitoring_manifests.py            # (make monitoring-manifests)
    python scripts/monitoring_manifests.py --check    # exit 1 if the file is out of date

rules.yaml is the one source: promtool checks and tests it, the ConfigMap of a plain
Prometheus carries it, and the PrometheusRule's ``spec.groups`` is its ``groups:`` block,
byte for byte (indented under ``spec:``). tests/test_monitoring_manifests.py checks that.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

MONITORING = Path(__file__).resolve().parent.parent / "deploy" / "monitoring"
RULES = MONITORING / "rules.yaml"
PROMETHEUS_RULE = MONITORING / "operator" / "prometheusrule.yaml"
HEADER = """\
# Generated from ../rules.yaml by `make monitoring-manifests` (scripts/monitoring_manifests.py):
# edit rules.yaml, then regenerate. spec.groups is rules.yaml's groups block, byte for byte.
# Your Prometheus resource's ruleSelector must match this object's labels (e.g. release: ...).
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: fmnist-service
spec:
"""


def groups_block(rules_text: str) -> str:
    """rules.yaml from its ``groups:`` line on (the comments above it left out)."""
    start = rules_text.find("\ngroups:")
    if not rules_text.startswith("groups:") and start < 0:
        raise ValueError("rules.yaml has no top-level 'groups:' line")
    return rules_text if rules_text.startswith("groups:") else rules_text[start + 1 :]


def prometheus_rule(rules_text: str) -> str:
    lines = groups_block(rules_text).splitlines(keepends=True)
    return HEADER + "".join("  " + line if line.strip() else line for line in lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="only check that the file is current")
    args = p.parse_args(argv)
    wanted = prometheus_rule(RULES.read_text())
    if args.check:
        if not PROMETHEUS_RULE.exists() or PROMETHEUS_RULE.read_text() != wanted:
            print(f"{PROMETHEUS_RULE} is out of date: run make monitoring-manifests")
            return 1
        return 0
    PROMETHEUS_RULE.write_text(wanted)
    print(f"wrote {PROMETHEUS_RULE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
