#!/usr/bin/env bash
# Container smoke test: build the image, start a container, wait for /readyz, classify a
# real test image with both models, read /metrics, check that torch is absent, that it
# runs as non-root and the image size, then stop it. Exits non-zero on any failure.
#
#   scripts/container_smoke.sh                    # or: make container-smoke
#
# Engine: docker when a Docker engine answers, else podman to build and buildah (or
# podman) to run. Everything is overridable through the environment:
#   ENGINE=docker|podman        RUNNER=docker|podman|buildah   IMAGE=fmnist-service:smoke
#   BASE_IMAGE=python:3.11-slim BUILD_OPTS="..." (extra build options)
#   RUN_OPTS="..." (extra run options)  MODEL_SRC=artifacts/onnx (folder with both .onnx)
#   PORT=3000 (host port)  READY_TIMEOUT=180  MAX_IMAGE_MB=800  SKIP_BUILD=1  PY=.venv/bin/python
# On a machine without a Docker engine (see docs/deployment.md), for example:
#   BASE_IMAGE=localhost/py311-base:bookworm BUILD_OPTS="--isolation=chroot --network=host \
#     -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
#     -v /etc/resolv.conf:/etc/resolv.conf:ro" scripts/container_smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-fmnist-service:smoke}
PORT=${PORT:-3000}
READY_TIMEOUT=${READY_TIMEOUT:-180}
MAX_IMAGE_MB=${MAX_IMAGE_MB:-800}
MODEL_SRC=${MODEL_SRC:-artifacts/onnx}
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
URL="http://127.0.0.1:$PORT"
SERVE=(bentoml serve service.service:FashionMNISTService --host 0.0.0.0 --port "$PORT")

say() { echo "smoke: $*"; }
die() { echo "smoke: FAIL: $*" >&2; exit 1; }

if [ -z "${ENGINE:-}" ]; then
  if command -v docker >/dev/null && timeout 10 docker info >/dev/null 2>&1; then ENGINE=docker
  elif command -v podman >/dev/null; then ENGINE=podman
  else die "neither a Docker engine nor podman is available"; fi
fi
if [ -z "${RUNNER:-}" ]; then
  # podman run needs rlimits that some sandboxes refuse; buildah run (a chroot) does not.
  if [ "$ENGINE" = docker ]; then RUNNER=docker
  elif command -v buildah >/dev/null; then RUNNER=buildah
  else RUNNER=podman; fi
fi
say "engine $ENGINE, runner $RUNNER, image $IMAGE, port $PORT"

mkdir -p build
# The Dockerfile copies the models from a folder inside the build context.
[ -f "$MODEL_SRC/baseline.onnx" ] && [ -f "$MODEL_SRC/deeper.onnx" ] \
  || die "$MODEL_SRC lacks baseline.onnx/deeper.onnx (run make export, or set MODEL_SRC)"
model_arg=$MODEL_SRC
if [ "$(realpath "$MODEL_SRC")" != "$(realpath -m artifacts/onnx)" ]; then
  mkdir -p build/docker-models
  rm -f build/docker-models/*.onnx
  cp "$MODEL_SRC/baseline.onnx" "$MODEL_SRC/deeper.onnx" build/docker-models/
  [ -f "$MODEL_SRC/improved.onnx" ] && cp "$MODEL_SRC/improved.onnx" build/docker-models/
  model_arg=build/docker-models
fi

if [ -z "${SKIP_BUILD:-}" ]; then
  build=("$ENGINE" build -t "$IMAGE" --build-arg "MODEL_DIR=$model_arg")
  [ -n "${BASE_IMAGE:-}" ] && build+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
  [ "$ENGINE" = podman ] && build+=(--format docker)  # keeps HEALTHCHECK (OCI drops it)
  # shellcheck disable=SC2206  # BUILD_OPTS is a list of options on purpose
  build+=(${BUILD_OPTS:-} .)
  say "${build[*]}"
  start=$(date +%s)
  "${build[@]}" > build/container-build.log 2>&1 || { tail -30 build/container-build.log; die "build failed"; }
  say "built in $(( $(date +%s) - start ))s (log: build/container-build.log)"
fi

size=$("$ENGINE" image inspect "$IMAGE" --format '{{.Size}}')
size_mb=$(( size / 1000000 ))
say "image size: ${size_mb} MB (goal <= ${MAX_IMAGE_MB} MB)"

ctr="" ; runner_pid="" ; mnt_ns=""
container_pids() {  # processes in the server's mount namespace (buildah run gives it its own)
  local p
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$mnt_ns" ] && echo "${p#/proc/}"
  done
  return 0
}
cleanup() {
  case "$RUNNER" in
    docker|podman) if [ -n "$ctr" ]; then "$RUNNER" rm -f "$ctr" >/dev/null 2>&1 || true; fi ;;
    buildah)
      # BentoML workers run in sessions of their own: signal every process of the
      # container by pid, not just the buildah process group.
      local pids=""
      [ -n "$mnt_ns" ] && pids=$(container_pids)
      if [ -n "$runner_pid" ]; then kill -TERM -- "-$runner_pid" 2>/dev/null || true; fi
      # shellcheck disable=SC2086
      [ -n "$pids" ] && kill -TERM $pids 2>/dev/null
      for _ in $(seq 1 20); do
        [ -n "$mnt_ns" ] && pids=$(container_pids)
        [ -z "$pids" ] && ! kill -0 "${runner_pid:-0}" 2>/dev/null && break
        sleep 0.5
      done
      # shellcheck disable=SC2086
      [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
      if [ -n "$ctr" ]; then buildah rm "$ctr" >/dev/null 2>&1 || true; fi ;;
  esac
  return 0
}
trap cleanup EXIT

in_container() {  # run a command inside the started container
  case "$RUNNER" in
    docker|podman) "$RUNNER" exec "$ctr" "$@" ;;
    buildah) buildah run --isolation=chroot --network=host "$ctr" -- "$@" ;;
  esac
}

case "$RUNNER" in
  docker|podman)
    # shellcheck disable=SC2086
    ctr=$("$RUNNER" run -d -p "127.0.0.1:$PORT:3000" ${RUN_OPTS:-} "$IMAGE") ;;
  buildah)
    # buildah run ignores the image's CMD and shares the host network: pass both.
    ctr=$(buildah from "$IMAGE")
    # shellcheck disable=SC2086
    # setsid: its own process group, so cleanup stops the server and all its workers.
    setsid buildah run --isolation=chroot --network=host ${RUN_OPTS:-} "$ctr" -- "${SERVE[@]}" \
      > build/container-serve.log 2>&1 &
    runner_pid=$! ;;
  *) die "unknown RUNNER=$RUNNER" ;;
esac
say "container $ctr started; waiting for $URL/readyz (at most ${READY_TIMEOUT}s)"

start=$(date +%s)
until [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/readyz")" = 200 ]; do
  if [ $(( $(date +%s) - start )) -ge "$READY_TIMEOUT" ]; then
    [ "$RUNNER" = buildah ] && tail -20 build/container-serve.log
    [ "$RUNNER" != buildah ] && "$RUNNER" logs "$ctr" 2>&1 | tail -20
    die "/readyz not 200 after ${READY_TIMEOUT}s"
  fi
  [ -n "$runner_pid" ] && ! kill -0 "$runner_pid" 2>/dev/null \
    && { tail -20 build/container-serve.log; die "the server exited"; }
  sleep 1
done
say "ready after $(( $(date +%s) - start ))s"
if [ "$RUNNER" = buildah ]; then
  server_pid=$(ss -Hltnp "sport = :$PORT" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
  [ -n "$server_pid" ] && mnt_ns=$(readlink "/proc/$server_pid/ns/mnt")
  # Never the host's own namespace: that would name every process on the machine.
  [ "$mnt_ns" = "$(readlink /proc/self/ns/mnt)" ] && mnt_ns=""
fi

# A real test image (the first of the test set) as PNG, and its true label.
label=$("$PY" - build/smoke.png <<'EOF'
import sys
from fmnist.dataset import CLASS_NAMES, load_test_set
from loadtests.payloads import encode_png
split = load_test_set(verify=False, limit=1)
open(sys.argv[1], "wb").write(encode_png(split.images[0]))
print(CLASS_NAMES[int(split.labels[0])])
EOF
) || die "could not read a test image (is the Fashion-MNIST dataset installed?)"
for model in baseline deeper; do
  answer=$(curl -sf -F "image=@build/smoke.png;type=image/png" -F "model=$model" "$URL/classify") \
    || die "POST /classify (model $model) failed"
  summary=$(printf '%s' "$answer" | "$PY" -c \
    'import json,sys; a=json.load(sys.stdin); print(a["model"], a["class_name"], round(a["confidence"], 4))') \
    || die "answer is not the contract's JSON: $answer"
  say "classify (true label: $label): $summary"
done
bad=$(curl -s -o /dev/null -w '%{http_code}' -F "image=@build/smoke.png" -F "model=nope" "$URL/classify")
[ "$bad" = 404 ] || die "unknown model answered $bad, expected 404"
say "unknown model -> 404"

# The demo page works offline: the page, its script and a bundled example come from the image.
page=$(curl -sf "$URL/ui") || die "GET /ui failed"
example=$(grep -o 'ui/examples/[a-z_]*\.png' <<<"$page" | head -1)
[ -n "$example" ] || die "/ui lists no bundled example"
for path in ui/static/demo.js ui/static/demo.css "$example"; do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/$path")" = 200 ] || die "GET /$path is not 200"
done
say "demo page /ui, its script and $example served"

metrics=$(curl -sf "$URL/metrics") || die "GET /metrics failed"
for series in fmnist_predictions_total fmnist_inference_seconds_count fmnist_model_info \
              fmnist_reference_class_share; do
  grep -q "^$series" <<<"$metrics" || die "/metrics lacks $series"
done
say "/metrics: $(grep -c '^fmnist_' <<<"$metrics") fmnist_* samples, e.g. $(grep -m1 '^fmnist_predictions_total' <<<"$metrics")"

uid=$(in_container id -u)
[ "$uid" != 0 ] || die "the container runs as root"
say "runs as uid $uid"
# nvidia-ml-py (NVML bindings, a bentoml dependency) is fine; CUDA wheels are not.
if in_container pip list 2>/dev/null | grep -iE '^(torch|torchvision|nvidia-[a-z-]+-cu[0-9]+) ' ; then
  die "torch/CUDA packages are in the image"
fi
say "no torch, torchvision or CUDA (nvidia-*-cuXX) package in the image"
[ "$size_mb" -le "$MAX_IMAGE_MB" ] || die "image is ${size_mb} MB, above ${MAX_IMAGE_MB} MB"
say "PASS"
