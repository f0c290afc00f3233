# One entry point for every job. `make help` lists them.
#   make all    set up, train (or reuse) the three models, export, figures, serve, evaluate
#   make test   set up, then the whole test suite (what CI runs)
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY := .venv/bin/python
ARTIFACTS ?= artifacts
RESULTS ?= docs/results
PORT ?= 3000

.PHONY: help setup all train export report import-models serve evaluate test test-fast lint \
        bench-train bench-serve loadtest loadtest-short soak container-smoke clean seeds ablation

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

setup:  ## virtual environment + dependencies + dataset (idempotent)
	@bash scripts/setup.sh

all: setup  ## the main job: train, export, report, then serve and evaluate end to end
	$(PY) scripts/pipeline.py --artifacts $(ARTIFACTS) --results $(RESULTS)

train: setup  ## train both models with the study's settings (resumes; reuses finished runs)
	$(PY) -m training.train --out $(ARTIFACTS)

export: setup  ## export both models to ONNX with the PyTorch parity check
	$(PY) -m training.export --out $(ARTIFACTS)

report: setup  ## training figures and the summary table into docs/results
	$(PY) -m training.report --artifacts $(ARTIFACTS) --out $(RESULTS)

test: setup lint typecheck  ## lint, types, then the whole test suite, slow tests included (what CI runs)
	$(PY) -m pytest -q

test-fast: setup  ## the tests not marked slow
	$(PY) -m pytest -q -m "not slow"

lint: setup  ## ruff lint + format check, then the import contracts (lint-imports, pyproject.toml)
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/lint-imports --no-logo

.PHONY: typecheck mutation
typecheck: setup  ## mypy on the packages listed in pyproject.toml [tool.mypy] files
	.venv/bin/mypy

# Not in CI (about 30 CPU-minutes, ~2,200 mutants): mutmut's mutants of fmnist/ and of
# service/{validation,settings,metrics}.py, evaluation/metrics.py, training/export.py, then
# hand-written ones of their module-level facts, against the tests of [tool.mutmut].
# `.venv/bin/mutmut results` lists the survivors, `mutmut show NAME` shows one.
mutation: setup  ## mutation testing (core, service input/settings/metrics, statistics, export); prints the score
	rm -rf mutants && mkdir mutants
	.venv/bin/mutmut run --max-children 2 < /dev/null > mutants/run.log 2>&1 || { tail -c 3000 mutants/run.log; exit 1; }
	@# A timeout counts as detected; one caused by a loaded or paused machine is not: rerun them once.
	.venv/bin/mutmut results | sed -n 's/^ *\(.*\): timeout$$/\1/p' > mutants/timeouts.txt
	[ ! -s mutants/timeouts.txt ] || xargs -a mutants/timeouts.txt .venv/bin/mutmut run --max-children 2 < /dev/null >> mutants/run.log 2>&1
	$(PY) scripts/mutate_constants.py
	$(PY) scripts/mutation_score.py

bench-train: setup  ## training images/s: plain loop vs the project's step
	$(PY) benchmarks/train_throughput.py --compile

.PHONY: bench-peers
PEERS_REQ := benchmarks/peers/requirements-kserve.txt
bench-peers:  ## the serving benchmark's KServe peer, in its own virtualenv .venv-peers
	@stamp=.venv-peers/.installed-$$(sha256sum $(PEERS_REQ) | cut -c1-16); \
	if [ ! -e $$stamp ]; then \
	  echo "bench-peers: installing $(PEERS_REQ) into .venv-peers"; \
	  [ -x .venv-peers/bin/python ] || $$(command -v python3.11 || echo python3) -m venv .venv-peers; \
	  .venv-peers/bin/python -m pip install -q -r $(PEERS_REQ) && rm -f .venv-peers/.installed-* && touch $$stamp; \
	fi

BENCH_SERVE_ARGS ?=
bench-serve: setup bench-peers  ## serving benchmark: service vs BentoML reference and KServe (wrk, server CPU)
	$(PY) benchmarks/serve_throughput.py --onnx-dir $(ARTIFACTS)/onnx $(BENCH_SERVE_ARGS)

clean:  ## remove build outputs (keeps artifacts/ and the venv)
	rm -rf reports build .pytest_cache .ruff_cache

LOADTEST_ARGS ?=
loadtest: setup  ## load test: start the service, 32 users for 60 s, check p99/errors/throughput
	bash scripts/loadtest.sh --model-dir $(ARTIFACTS)/onnx --users 32 --run-time 60s --min-rps 100 $(LOADTEST_ARGS)

loadtest-short: setup  ## the CI-sized load test: 8 users for 15 s, same targets
	bash scripts/loadtest.sh --model-dir $(ARTIFACTS)/onnx --users 8 --run-time 15s --min-rps 20 $(LOADTEST_ARGS)

soak: setup  ## 10-minute soak, 16 users at moderate load: no errors, server RSS growth <= 10 % (not CI)
	$(PY) -m loadtests.soak --model-dir $(ARTIFACTS)/onnx --users 16 --duration 10m

container-smoke: setup  ## build the image, start it, classify a test image, read /metrics, stop
	MODEL_SRC=$${MODEL_SRC:-$(ARTIFACTS)/onnx} bash scripts/container_smoke.sh

serve: setup  ## import artifacts/onnx into the BentoML model store and serve on :$(PORT)
	$(PY) -m service.import_models --onnx-dir $(ARTIFACTS)/onnx
	.venv/bin/bentoml serve service.service:FashionMNISTService --port $(PORT)

seeds: setup  ## the improved recipe over 3 seeds: mean ± std (about 40 min a seed on 2 cores)
	$(PY) -m training.seeds --model improved --seeds 42 1 2 --out $(ARTIFACTS) --results $(RESULTS)

ablation: setup  ## what each part of the improved recipe buys, on the validation split (20-epoch runs)
	$(PY) -m training.ablation --out $(ARTIFACTS)/ablation --full-run $(ARTIFACTS) --results $(RESULTS)

# The service on $(ARTIFACTS)/onnx (one worker, its own BENTOML_HOME, a free loopback port)
# for as long as scripts/screenshots.py takes; stopped (its process group) however that ends.
.PHONY: screenshots
screenshots: setup  ## the demo page /ui and the evaluation report at 1400 and 390 px -> docs/images/*.png
	@home=$$(mktemp -d); port=$$($(PY) -c 'from loadtests.launch import free_port; print(free_port())'); \
	FMNIST_MODEL_DIR=$(ARTIFACTS)/onnx FMNIST_WORKERS=1 BENTOML_HOME=$$home BENTOML_DO_NOT_TRACK=true \
	  setsid .venv/bin/bentoml serve service.service:FashionMNISTService --host 127.0.0.1 \
	  --port $$port > $$home/serve.log 2>&1 & pid=$$!; \
	trap 'kill -TERM -- -'$$pid' 2>/dev/null; wait '$$pid'; rm -rf '$$home EXIT; \
	$(PY) -m scripts.screenshots --url http://127.0.0.1:$$port \
	  --report $(RESULTS)/evaluation/report.html --out docs/images \
	  || { echo "--- the service's log:"; tail -n 20 $$home/serve.log; exit 1; }

.PHONY: monitoring-manifests dashboard-png
monitoring-manifests:  ## deploy/monitoring/operator/prometheusrule.yaml from deploy/monitoring/rules.yaml
	$(PY) scripts/monitoring_manifests.py

DASHBOARD_ARGS ?=
dashboard-png: setup  ## docs/images/dashboard.png: the dashboard's queries drawn from a real run (~3 min)
	$(PY) -m loadtests.dashboard --onnx-dir $(ARTIFACTS)/onnx --out docs/images/dashboard.png $(DASHBOARD_ARGS)
