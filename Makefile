# faceprint: `make install` sets up .venv, `make run` starts the server with a demo collection,
# `make test` runs the whole suite (the packaging test builds a wheel and installs it in a fresh venv).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
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

install: $(STAMP)

run: $(STAMP)
	$(BIN)/faceprint demo --host $(HOST) --port $(PORT)

test: $(STAMP)
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
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
