# Developer entry points. `make setup` is idempotent: a second run is a no-op
# unless pyproject.toml, setup.py, the cffi builder or csrc/ changed (editable
# installs do not rebuild the C extension by themselves), or third_party/pyfuse3
# changed (pyfuse3 3.5.0 patched with lseek for SEEK_DATA/SEEK_HOLE, a switch
# for the kernel's automatic page-cache invalidation and the open flags
# cache_readdir/noflush; its build
# script is idempotent by content: see third_party/pyfuse3/README.md).

SHELL   := /bin/bash
PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
APT_PKGS := fuse3 fuse-overlayfs libfuse3-dev pkg-config fio libssl-dev libxxhash-dev libipsec-mb-dev gcc python3-dev python3-venv umoci skopeo mmdebstrap containerd runc golang-go golang-github-containerd-containerd-dev docker-registry
INSTALL_DEPS := pyproject.toml setup.py blockstore/native/build.py \
                $(wildcard csrc/*.c csrc/*.h)
PYFUSE3_STAMP := $(VENV)/.pyfuse3-patched
PYFUSE3_DEPS  := third_party/pyfuse3/build.sh third_party/pyfuse3/blockstore.patch
# gRPC stubs of the containerd snapshotter service, generated here rather than
# checked in: generated protobuf code must match the protobuf runtime installed
# with it (newer runtimes refuse older or newer gencode), so they are made by
# the grpcio-tools that `pip install '.[containerd]'` just installed.
PROTO_DIR    := blockstore/snapshotter/proto
PROTOS       := $(wildcard $(PROTO_DIR)/*.proto)
PROTO_STAMP  := $(PROTO_DIR)/.generated

.PHONY: setup apt test demo bench clean

setup: apt $(STAMP) $(PROTO_STAMP)
	@# Byte-code for every module, written here because the editable install
	@# does not and environments with PYTHONDONTWRITEBYTECODE never would:
	@# without it every `blockstore` process (the tests start hundreds)
	@# compiles ~120 modules again, which costs more than the command.
	@# Up-to-date files are skipped, so this stays idempotent and quick.
	@$(PY) -m compileall -q -j 0 blockstore tools >/dev/null

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

# The patched pyfuse3 goes in first: pip install -e then finds `pyfuse3>=3.3`
# satisfied (3.5.0+bs.KEY) and keeps it; the check after it makes sure.
$(PYFUSE3_STAMP): $(PY) $(PYFUSE3_DEPS)
	bash third_party/pyfuse3/build.sh $(PY)
	touch $@

# editable_mode=compat: the checkout goes on sys.path through a .pth line; the
# default mode's import hook costs about 20 ms at every interpreter start (each
# CLI command, each FUSE daemon), which an installed blockstore does not pay.
$(STAMP): $(PY) $(PYFUSE3_STAMP) $(INSTALL_DEPS)
	$(PY) -m pip install -q -e '.[test,containerd,remote,remote-test]' \
	  --config-settings editable_mode=compat
	@$(PY) -c 'import pyfuse3, sys; O = pyfuse3.Operations; \
	  sys.exit(0 if hasattr(O, "lseek") and hasattr(O, "enable_auto_inval_data") \
	  and hasattr(pyfuse3.FileInfo(), "cache_readdir") else \
	  "unpatched pyfuse3 installed (expected the build of third_party/pyfuse3)")'
	touch $@

$(PROTO_STAMP): $(STAMP) $(PROTOS)
	$(PY) -m grpc_tools.protoc -I . --python_out=. --grpc_python_out=. $(PROTOS)
	touch $@

test: setup
	$(PY) -m pytest -q -p no:cacheprovider -n 2 --dist loadgroup tests

demo: setup
	$(PY) tools/demo.py

bench: setup
	$(PY) tools/bench.py engine --quick

clean:
	rm -rf $(VENV) build dist *.egg-info .hypothesis .pytest_cache
	rm -f $(PROTO_DIR)/*_pb2.py $(PROTO_DIR)/*_pb2_grpc.py $(PROTO_STAMP)
	rm -f blockstore/native/_blockkern.c blockstore/native/_blockkern*.so
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
