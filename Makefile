# Developer entry points. `make setup` is idempotent: a second run is a no-op
# unless pyproject.toml, setup.py, the cffi builder or csrc/ changed (editable
# installs do not rebuild the C extension by themselves).

SHELL   := /bin/bash
PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
APT_PKGS := fuse3 libfuse3-dev pkg-config fio libssl-dev gcc python3-dev python3-venv umoci skopeo mmdebstrap
INSTALL_DEPS := pyproject.toml setup.py blockstore/native/build.py \
                $(wildcard csrc/*.c csrc/*.h)

.PHONY: setup apt test demo bench clean

setup: apt $(STAMP)

# Installs only what is missing; runs apt-get update at most once.
apt:
	@missing=""; \
	for p in $(APT_PKGS); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -q </dev/null && \
	  apt-get install -y -q --no-install-recommends $$missing </dev/null; \
	fi

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): $(PY) $(INSTALL_DEPS)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

test: setup
	$(PY) -m pytest -q -p no:cacheprovider -n 2 tests

demo: setup
	$(PY) tools/demo.py

bench: setup
	$(PY) tools/bench.py engine --quick

clean:
	rm -rf $(VENV) build dist *.egg-info .hypothesis .pytest_cache
	rm -f blockstore/native/_blockkern.c blockstore/native/_blockkern*.so
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
