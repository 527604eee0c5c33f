# Lookout's entry points. Every target that runs code depends on `setup`, which is a no-op
# when nothing changed, so `make test` and `make demo` work on a fresh clone.
SHELL := /bin/bash
RUN := scripts/run.sh
PYTEST_ARGS ?=

.PHONY: setup test test-fast demo models bench lint clean help

help:
	@echo "make setup   create .venv, install pinned dependencies, build ros2_ws (idempotent)"
	@echo "make test    set up, then run the whole test suite"
	@echo "make demo    set up, then run the main demo"
	@echo "make models  rebuild the tiny models from their seed"
	@echo "make bench   list the benchmarks (bench/*.py)"
	@echo "make lint    ruff"

setup:
	@bash scripts/setup.sh

test: setup
	$(RUN) python -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

demo: setup
	$(RUN) lookout demo

models: setup
	$(RUN) lookout models build tiny

bench:
	@ls bench/*.py | sed 's/^/  scripts\/run.sh python /'

lint: setup
	$(RUN) ruff check src kernels ros2_ws/src tests bench

clean:
	rm -rf ros2_ws/build ros2_ws/install ros2_ws/log
