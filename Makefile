# Thin wrappers around dev.py, which needs only Python 3.11.
PY ?= python3.11
.PHONY: env demo test build bench lint
env:
	$(PY) dev.py env
demo:
	$(PY) dev.py demo
test:
	$(PY) dev.py test
build:
	$(PY) dev.py build
bench:
	$(PY) dev.py bench
lint:
	.venv/bin/python -m ruff check .
