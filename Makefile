# Two commands do all the set-up: `make demo` and `make test`.
# Both create .venv on first use. TORCH picks the PyTorch build: the default is the
# one that installs on our development machines; elsewhere pass the CPU or CUDA
# build for your platform from PyTorch's install selector, e.g.
#   make test TORCH="torch torchvision"
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.14.1 torchvision==0.29.1
BIN = $(VENV)/bin

.PHONY: demo test docs env benchmarks clean

env: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[test,docs]'
	touch $@

demo: env
	$(BIN)/galaxymorph demo --out demo_output

# The user guide is built with warnings as errors, so a renamed function breaks the build, not the docs.
test: env
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -n 2 --durations=15
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

docs: env
	$(BIN)/mkdocs serve

clean:
	rm -rf demo_output .pytest_cache site
