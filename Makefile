# Two entry points that work on a fresh machine: `make demo` and `make test`.
# torch is pinned: an unpinned torch pulls several GB of CUDA packages.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0
DEMO_DIR ?= demo_out

.PHONY: install test lint demo bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/activate
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[train,export,plot,dev]"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: install
	$(BIN)/ruff check .
	$(BIN)/pytest -q

bench: install
	$(BIN)/pytest -q tests/benchmarks --benchmark-enable -s

# The main job on built-in defaults: generate scenes, compute features, time them, score CSVs.
demo: install
	$(BIN)/seld-edge synth $(DEMO_DIR)/data --train 4 --test 2 --seconds 20 --seed 0
	$(BIN)/seld-edge features $(DEMO_DIR)/data/foa_dev/dev-test-synth/fold2_room1_mix001.wav \
		--kind foa_logmel_iv -o $(DEMO_DIR)/features.npy
	$(BIN)/seld-edge bench features --seconds 60
	@echo "scoring the held-out references against themselves (the metric pipeline's sanity check):"
	$(BIN)/seld-edge eval --ref $(DEMO_DIR)/data/metadata_dev/dev-test-synth \
		--pred $(DEMO_DIR)/data/metadata_dev/dev-test-synth --json

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .ruff_cache
