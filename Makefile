# mod_cloud_notify (Rust core + Lua shim) for Prosody.
#
#   make demo      a local Prosody with the module, a demo app server and a scripted client
#   make test      every test: cargo test, lints, busted specs, end-to-end in real Prosody
#   make dist      dist/mod_cloud_notify/ (shim + compiled core), ready for plugin_paths
#   make install   copy it to $(DESTDIR)$(MODULEDIR)

PREFIX ?= /usr/local
MODULEDIR ?= $(PREFIX)/lib/prosody/modules
CARGO ?= cargo
VENV := .venv
PYTHON := $(VENV)/bin/python
DIST := dist/mod_cloud_notify
LIB := target/release/libcloud_notify.so

PROSODY13 := .work/prosody13

.PHONY: all build dist install deps prosody13 pydeps test test-rust lint test-busted test-e2e demo clean

all: dist

build:
	$(CARGO) build --release --features module

$(LIB): build

dist: build
	install -d $(DIST)
	# install (not cp): overwriting a loaded .so in place crashes a running Prosody
	install -m 0644 $(LIB) $(DIST)/cloud_notify.so
	install -m 0644 lua/mod_cloud_notify.lua $(DIST)/mod_cloud_notify.lua

install: dist
	install -d $(DESTDIR)$(MODULEDIR)/mod_cloud_notify
	install -m 0644 $(DIST)/cloud_notify.so $(DIST)/mod_cloud_notify.lua $(DESTDIR)$(MODULEDIR)/mod_cloud_notify/

# System packages (Prosody, Lua 5.4, busted, luacheck) and the Python test client.
deps:
	scripts/install-deps.sh

# Prosody 13.0.x from bookworm-backports, unpacked beside the system's 0.12.3.
prosody13:
	scripts/install-prosody13.sh $(PROSODY13)

pydeps: $(VENV)/.done

$(VENV)/.done: tests/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r tests/requirements.txt
	touch $@

test: deps prosody13 pydeps dist test-rust lint test-busted test-e2e

test-rust:
	$(CARGO) test

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --features module --all-targets -- -D warnings
	luacheck lua spec tests/e2e/modules

test-busted: dist
	lua5.4 /usr/bin/busted --lua=lua5.4 spec

# Every e2e test runs on Prosody 0.12.3 and 13.0.x (PROSODY_VERSIONS="0.12"
# or "13" narrows it down).
test-e2e: dist pydeps prosody13
	$(PYTHON) -m pytest -q tests/e2e

demo: deps pydeps dist
	$(PYTHON) tests/demo.py $(ARGS)

clean:
	$(CARGO) clean
	rm -rf dist .work
