#!/usr/bin/env bash
# Set up everything the project needs on a fresh machine, idempotently:
#   - the Fashion-MNIST dataset (Debian package dataset-fashion-mnist) when it is missing,
#   - a virtual environment in .venv with the project and all its extras.
# A second run with nothing changed takes a second.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
EXTRAS=${EXTRAS:-training,service,evaluation,loadtest,dev}

if [ ! -e /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ] && [ -z "${FMNIST_DATA_DIR:-}" ]; then
  echo "setup: installing the Fashion-MNIST dataset (Debian package dataset-fashion-mnist)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -q >/dev/null
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist >/dev/null
fi

# Debian tools the benchmarks and tests drive for real:
#   wrk, hey                   the serving benchmark's load generators (benchmarks/serve_throughput.py)
#   prometheus (promtool)      rule unit tests and the Prometheus integration test (deploy/monitoring)
#   chromium, chromium-driver  the browser tests of report.html and the /ui demo page (Selenium)
missing_tools=""
for pair in wrk:wrk hey:hey promtool:prometheus prometheus:prometheus chromium:chromium \
            chromedriver:chromium-driver; do
  command -v "${pair%%:*}" >/dev/null || case " $missing_tools " in
    *" ${pair#*:} "*) ;;
    *) missing_tools="$missing_tools ${pair#*:}" ;;
  esac
done
if [ -n "$missing_tools" ]; then
  echo "setup: installing Debian packages:$missing_tools"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -q >/dev/null
  # shellcheck disable=SC2086
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing_tools >/dev/null
fi

stamp=.venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)-${EXTRAS//,/-}
if [ ! -e "$stamp" ]; then
  echo "setup: creating .venv and installing the project [$EXTRAS] (a few minutes the first time)"
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[$EXTRAS]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
