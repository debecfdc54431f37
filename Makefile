# faceprint: `make install` sets up .venv, `make run` starts the server with a demo collection,
# `make test` runs the whole suite (the packaging test builds a wheel and installs it in a fresh venv).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
E2E := tests/e2e
E2E_STAMP := $(E2E)/node_modules/.installed
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: install run test lint bench clean

SHIMS := bench/shims/dlib bench/shims/face-recognition-models

# One pip command, nothing else: faceprint with every extra. The two folders are the metadata-only
# stand-ins that let the bench extra's face_recognition resolve to dlib-bin (see pyproject.toml).
$(STAMP): pyproject.toml $(addsuffix /pyproject.toml,$(SHIMS))
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,bench,cluster]' $(addprefix ./,$(SHIMS))
	touch $(STAMP)

# The console's browser tests: playwright-core from the npm registry (no browser download: they drive
# Debian's /usr/bin/chromium, which .ci/run installs when missing).
$(E2E_STAMP): $(E2E)/package.json $(E2E)/package-lock.json
	cd $(E2E) && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
	touch $(E2E_STAMP)

install: $(STAMP) $(E2E_STAMP)

run: $(STAMP)
	$(BIN)/faceprint demo --host $(HOST) --port $(PORT)

test: $(STAMP) $(E2E_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

bench: $(STAMP)
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/ingest.py --n 2000
	$(BIN)/python bench/detect.py --lfw 200
	$(BIN)/python bench/embed.py
	$(BIN)/python bench/search.py --n 1000000
	$(BIN)/python bench/video.py
	$(BIN)/python bench/server.py
	$(BIN)/python bench/views.py
	$(BIN)/python bench/quantize.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache $(E2E)/node_modules
