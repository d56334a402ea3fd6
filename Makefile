# Two commands do all the set-up: `make run` and `make test`. Each installs what it needs (scripts/bootstrap.sh).
.PHONY: setup run test lint bench clean

PYTHON := .venv/bin/python

setup:
	@scripts/bootstrap.sh

run: setup
	@$(PYTHON) -m devstack

# pytest's exit code 5 means "no tests ran": that is a failure here, not a pass.
test: setup
	@$(PYTHON) -m ruff check --quiet --no-cache .
	@$(PYTHON) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: no tests ran" >&2; exit 1; fi; exit $$rc

lint: setup
	@$(PYTHON) -m ruff check --no-cache .

# The benchmarks run the services on loopback with the development CA: development (docs/configuration.md).
bench:
	@BOOTSTRAP_BENCH=1 scripts/bootstrap.sh
	@MYKEY_DEV=1 $(PYTHON) -m bench $(BENCH)

clean:
	rm -rf .venv .pytest_cache .ruff_cache .hypothesis test-artifacts
