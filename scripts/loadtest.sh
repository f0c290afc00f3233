#!/usr/bin/env bash
# One-command load test (what `make loadtest` runs): start the service unless --url is
# given, run locust headless, save CSV + HTML under reports/loadtest/, check the targets,
# stop the service. Exits 1 when a target is missed, 2 when the run itself fails.
#
#   scripts/loadtest.sh                                   # 32 users, 60 s, p99 <= 100 ms
#   scripts/loadtest.sh --users 1,8,32,64 --run-time 45s --no-check    # the sweep
#   scripts/loadtest.sh --url http://127.0.0.1:3000 --users 8 --run-time 20s
#   scripts/loadtest.sh --users 32 -- --model-mix baseline=1 --batch-share 0.1
# All options: scripts/loadtest.sh --help; scenario options: loadtests/locustfile.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
exec "$PY" -m loadtests.run "$@"
