# mod_cloud_notify (Rust core + Lua shim) for Prosody.
#
#   make demo      a local Prosody with the module, a demo app server and a scripted client
#   make demo-web  the same with Converse.js served on loopback and a live page of the pushes
#                  the app server receives (= make demo ARGS=--web)
#   make test      every test: cargo test, lints, busted specs, end-to-end in real Prosody
#   make dist      dist/mod_cloud_notify/ and dist/mod_muc_cloud_notify/ (shims +
#                  compiled core), ready for plugin_paths
#   make install   copy them to $(DESTDIR)$(MODULEDIR)
#   make bench     the side-by-side benchmark against the reference module
#   make fuzz      10^7 inputs through the core, 10^6 through the binding and shim
#   make browser-deps  Debian's chromium, and Converse.js and playwright-core from npm
#                  (tests/browser/package-lock.json) into .work/node
#   make prosody-modules  Debian's prosody-modules (bookworm-backports) unpacked into
#                  .work/prosody-modules: the real cloud_notify extensions the e2e tests load

PREFIX ?= /usr/local
MODULEDIR ?= $(PREFIX)/lib/prosody/modules
CARGO ?= cargo
VENV := .venv
PYTHON := $(VENV)/bin/python
MODULES := cloud_notify muc_cloud_notify
LIB := target/release/libcloud_notify.so

PROSODY13 := .work/prosody13
PROSODY_MODULES := .work/prosody-modules
NODE_DIR := .work/node

.PHONY: all build dist install deps prosody13 prosody-modules pydeps node-deps browser-deps test test-rust lint test-busted test-fuzz test-e2e demo demo-web bench fuzz clean

all: dist

build:
	$(CARGO) build --release --features module

$(LIB): build

# Two modules, one core: each folder holds its shim, the shared
# cloud_notify.lib.lua and the compiled core.
dist: build
	# install (not cp): overwriting a loaded .so in place crashes a running Prosody
	for m in $(MODULES); do \
		install -d dist/mod_$$m && \
		install -m 0644 $(LIB) dist/mod_$$m/cloud_notify.so && \
		install -m 0644 lua/cloud_notify.lib.lua lua/mod_$$m.lua dist/mod_$$m/ || exit 1; \
	done

install: dist
	for m in $(MODULES); do \
		install -d $(DESTDIR)$(MODULEDIR)/mod_$$m && \
		install -m 0644 dist/mod_$$m/* $(DESTDIR)$(MODULEDIR)/mod_$$m/ || exit 1; \
	done

# System packages (Prosody, Lua 5.4, busted, luacheck) and the Python test client.
deps:
	scripts/install-deps.sh

# Prosody 13.0.x from bookworm-backports, unpacked beside the system's 0.12.3.
prosody13:
	scripts/install-prosody13.sh $(PROSODY13)

# Debian's prosody-modules 0.0~hg20250402 (bookworm-backports), unpacked:
# the real mod_cloud_notify_extensions, _encrypted, _filters and
# _priority_tag, which the e2e tests load beside ours.
prosody-modules:
	scripts/install-prosody-modules.sh $(PROSODY_MODULES)

pydeps: $(VENV)/.done

$(VENV)/.done: tests/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r tests/requirements.txt
	touch $@

# Converse.js and playwright-core, pinned by tests/browser/package-lock.json
# (Node.js and npm from Debian if missing).
node-deps: $(NODE_DIR)/.done

$(NODE_DIR)/.done: tests/browser/package.json tests/browser/package-lock.json
	command -v npm >/dev/null || scripts/install-deps.sh nodejs npm
	install -d $(NODE_DIR)
	install -m 0644 tests/browser/package.json tests/browser/package-lock.json $(NODE_DIR)/
	cd $(NODE_DIR) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

# The Converse and demo tests: Debian's headless Chromium, driven by playwright-core.
browser-deps: node-deps
	scripts/install-deps.sh chromium

test: deps prosody13 prosody-modules pydeps browser-deps dist test-rust lint test-busted test-fuzz test-e2e

# The core's tests, then the binding's, in a Lua VM of their own (the
# system's liblua5.4: a module build can't link one).
test-rust:
	$(CARGO) test
	@# (fails on zero tests too: a rename must not leave the binding untested)
	out=$$($(CARGO) test --features vm --lib lua:: 2>&1); status=$$?; echo "$$out"; \
		[ $$status -eq 0 ] && echo "$$out" | grep -Eq "test result: ok\. [1-9][0-9]* passed"

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --features module --all-targets -- -D warnings
	luacheck lua spec fuzz tests/e2e/modules bench/modules bench/floor

test-busted: dist
	lua5.4 /usr/bin/busted --lua=lua5.4 spec

# A short slice of `make fuzz` (cargo test runs 20,000 inputs through the core).
test-fuzz: dist
	lua5.4 fuzz/fuzz_binding.lua 20000

# Random and mutated stanzas, enables and answers: 10^7 through the core
# alone, 10^6 through the shipped shim and binding (about 5 minutes).
FUZZ_SEED ?= 1
fuzz: dist
	FUZZ_CORE_INPUTS=10000000 FUZZ_SEED=$(FUZZ_SEED) $(CARGO) test --release --test fuzz_core -- --nocapture
	lua5.4 fuzz/fuzz_binding.lua 1000000 $(FUZZ_SEED)

# Every e2e test runs on Prosody 0.12.3 and 13.0.x (PROSODY_VERSIONS="0.12"
# or "13" narrows it down).
test-e2e: dist pydeps prosody13 prosody-modules browser-deps
	$(PYTHON) -m pytest -q tests/e2e

# Prosody three times (no push module, the reference, ours), same
# workloads side by side; then each under callgrind (instructions); prints
# CPU and instructions per message, memory and leaks (bench/bench.py). Then
# the path real servers take and scale (bench/scale.py): logins with in-band
# enables, memory per user, latency at 500 messages/s, and 100,000 users on
# PostgreSQL; then one message in a room of 20,000 members, 100 with push
# (bench/muc_room.py). About 45 minutes per version. PROSODY_VERSIONS=13 runs it on
# Prosody 13.0.x (the reference: its core module), "0.12 13" on both.
bench: pydeps dist prosody13
	scripts/install-deps.sh valgrind
	for v in $(or $(PROSODY_VERSIONS),0.12); do \
		BENCH_PROSODY=$$v $(PYTHON) bench/bench.py && \
		BENCH_PROSODY=$$v $(PYTHON) bench/scale.py && \
		BENCH_PROSODY=$$v $(PYTHON) bench/muc_room.py && \
		BENCH_PROSODY=$$v $(PYTHON) bench/push2.py || exit 1; \
	done

demo: deps pydeps dist
	$(if $(findstring --web,$(ARGS)),$(MAKE) node-deps)
	$(PYTHON) tests/demo.py $(ARGS)

demo-web:
	$(MAKE) demo ARGS="--web $(ARGS)"

clean:
	$(CARGO) clean
	rm -rf dist .work
