# The two commands of the README. Each installs the Debian packages it needs and builds what it needs.
#   make run    build a release binary and serve checkpoints/ on http://127.0.0.1:8080
#   make test   the whole test suite (what CI runs through .ci/run)
#   make dist   the release tarball for render boxes without Swift: dist/rind-VERSION-linux-ARCH.tar.gz
#               and its .sha256 (Deploy/README.md: install with Deploy/install.sh --artifact)
HOST ?= 127.0.0.1
PORT ?= 8080
STATE_DIR ?= ./rind-state
RIND_FLAGS ?=

.PHONY: run test build bench deps clean dist

run: deps build
	.build/release/rind serve --checkpoints checkpoints --host $(HOST) --port $(PORT) \
		--state-dir $(STATE_DIR) $(RIND_FLAGS)

test:
	bash scripts/test.sh

build: deps
	swift build -c release --product rind

bench: deps build
	swift build -c release --product rind-cpuid-mask
	.build/release/rind bench

dist:
	bash scripts/dist.sh

deps:
	bash scripts/bootstrap.sh

clean:
	rm -rf .build .build-dist dist .venv-test
