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

# The serving benchmark's load generators (benchmarks/serve_throughput.py): wrk and hey.
missing_tools=""
for tool in wrk hey; do command -v "$tool" >/dev/null || missing_tools="$missing_tools $tool"; done
if [ -n "$missing_tools" ]; then
  echo "setup: installing the benchmark's load generators:$missing_tools (Debian packages)"
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
