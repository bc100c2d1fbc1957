# The two commands the README promises. Both set up .venv first (scripts/setup.sh is a no-op when up to date).
.PHONY: setup demo test test-quick lint

setup:
	@bash scripts/setup.sh

demo: setup
	@bash scripts/demo.sh

test: setup
	@bash scripts/test.sh

test-quick: setup
	@.venv/bin/python -m pytest -q -m "not slow and not vllm and not gpu"

lint: setup
	@.venv/bin/ruff check harness tests benchmarks dashboard scripts
