# labelwise: `make demo` (quickstart) and `make test` (test suite). Both create/reuse .venv and install
# the extras they need: train (trainer, data, evaluators), studies (plots, MNIST-1D), test (pytest).
# `make mutate`: mutation testing (not in CI; docs/testing.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=
MUTATE_ARGS ?= --sample 0.2

.PHONY: venv demo test doctest test-slow bench docs mutate clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[train,studies,test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) experiments/quickstart.py --workdir runs/quickstart

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile $(PYTEST_ARGS)
	$(MAKE) --no-print-directory doctest

# Every docstring example of losses/ and eval/ (pytest --doctest-modules). The repository root is the
# package, so pytest would import these files under the checkout folder's name: a link named
# `labelwise` to the root gives them their package names.
doctest: $(STAMP)
	mkdir -p build/doctest && ln -sfn ../.. build/doctest/labelwise
	$(PY) -m pytest -q -p no:cacheprovider --doctest-modules build/doctest/labelwise/losses build/doctest/labelwise/eval

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m pip install -q -e '.[bench]'
	PY=$(PY) bash benchmarks/run_all.sh

# API reference (HTML from the docstrings) in build/docs; any pdoc warning fails the build.
docs: $(STAMP)
	$(PY) -m pip install -q -e '.[docs]'
	$(PY) -m labelwise._docs build/docs

# Mutation testing (not in CI; minutes to hours): scores and survivors into docs/testing.md.
mutate: $(STAMP)
	$(PY) -m pip install -q -e '.[mutate]'
	nice -n 15 $(PY) tools/mutate.py $(MUTATE_ARGS) --docs docs/testing.md

clean:
	rm -rf runs .pytest_cache
