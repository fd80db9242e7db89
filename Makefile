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
	$(BIN)/pytest -q -n auto --dist loadfile

# Benchmarks print ratios against a reference run in the same process: each side on one core with one
# thread per pool (BLAS, OpenMP, PyTorch, ONNX Runtime), the sides timed in alternating rounds.
# bench zoo: every model of the zoo in one table (bench_zoo/zoo.md, .csv, .json, .png).
bench: install
	$(BIN)/seld-edge bench features
	$(BIN)/seld-edge bench runtime
	$(BIN)/seld-edge bench scan
	$(BIN)/seld-edge bench zoo -o bench_zoo

# The main job on built-in defaults: new scenes through the shipped SELDnet (ONNX, torch-free
# runtime), DCASE CSVs, scores, PyTorch-vs-runtime parity and pictures. No network, no GPU.
MODEL := seld_edge/assets/seldnet_synth
demo: install
	$(BIN)/seld-edge synth $(DEMO_DIR)/data --train 0 --test 3 --seconds 30 --seed 1
	$(BIN)/seld-edge run $(MODEL).onnx $(DEMO_DIR)/data/foa_dev -o $(DEMO_DIR)/pred
	$(BIN)/seld-edge eval --ref $(DEMO_DIR)/data/metadata_dev --pred $(DEMO_DIR)/pred
	$(BIN)/seld-edge parity $(MODEL) $(MODEL).onnx --data $(DEMO_DIR)/data
	$(BIN)/seld-edge plot --ref $(DEMO_DIR)/data/metadata_dev --pred $(DEMO_DIR)/pred -o $(DEMO_DIR)/plots
	@echo "CSVs in $(DEMO_DIR)/pred, pictures in $(DEMO_DIR)/plots"

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .ruff_cache
