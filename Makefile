# PyTorch Practice. `make help` lists the targets.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
ch     ?=
impl   ?= exercises
sub    ?= examples/submissions
out    ?= gradebook
jobs   ?= 2

.DEFAULT_GOAL := help
.PHONY: help setup test check exercises data grade bench demo clean

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 12

setup: $(VENV)/.installed  ## create .venv and install the course and its pinned dependencies

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

test: setup  ## the project's own suite: solutions full marks, stubs 0, mistakes caught, stubs fresh
	$(PY) -m pytest tests/project -q -p no:cacheprovider -n 2 --dist loadgroup

check: setup  ## check one chapter: make check ch=05 [impl=solutions|PATH]
	@test -n "$(ch)" || { echo "usage: make check ch=05 [impl=solutions]"; exit 2; }
	@$(VENV)/bin/grader check $(ch) --impl $(impl)

exercises: setup  ## regenerate exercises/ from solutions/
	@$(VENV)/bin/grader stubs

data: setup  ## download the full MNIST and CIFAR-10 into datasets/full/ (needs the network)
	$(PY) datasets/build.py --download-full

grade: setup  ## grade every submission under sub=DIR into out=DIR (default gradebook/)
	$(VENV)/bin/grader grade $(sub) -o $(out) --jobs $(jobs)

bench: setup  ## the cohort grader's benchmark (100 submissions of chapter 05)
	$(PY) benchmarks/grade_cohort.py

demo: setup  ## regenerate the demonstration cohort in examples/submissions
	$(PY) examples/make_submissions.py

clean:  ## remove caches and grading output (keeps .venv)
	rm -rf gradebook .pytest_cache build *.egg-info
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
