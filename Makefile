# ztd: build, test and demo. `make test` is the test command; `make demo` the first thing to run.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build
.DELETE_ON_ERROR:

CARGO ?= cargo
HOST_TRIPLE := $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')
TOOLS := ztd-detect ztd-health ztd-up ztd-switch ztd-rollback ztd-monitor
BIN := target/debug
RELEASE_BIN := target/release
# The debug tools carry the named kill and pause points the recovery tests drive (ZTD_FAULT,
# ZTD_PAUSE); release builds, the ones installed, do not.
DEV_FEATURES := --features ztd-core/fault-injection
IMAGE_DIR := target/images
TESTAPP_IMAGE ?= ztd-testapp:latest

.PHONY: setup setup-tests install uninstall deb build release images testapp-image proxy-image test lint fmt-check clippy unit bench bench-swarm clean \
	deploy status health up switch monitor rollback cleanup demo demo-clean

# The stack the deploy targets act on, and the tools they run (built here, first on PATH).
PROJECT_DIR ?= .
export PATH := $(CURDIR)/$(BIN):$(PATH)

## build: the tools, debug profile
build:
	$(CARGO) build --workspace --bins $(DEV_FEATURES)

## release: the tools, optimised and stripped
release:
	$(CARGO) build --release --workspace --bins

## install: the release tools, their man pages and shell completions, the drop-in scripts and the
## example under DESTDIR/PREFIX (default /usr/local); uninstall removes exactly those
PREFIX ?= /usr/local
DESTDIR ?=
install: release
	bash mk/install.sh install --prefix $(PREFIX) --destdir "$(DESTDIR)" --bin-dir $(RELEASE_BIN)

uninstall:
	bash mk/install.sh uninstall --prefix $(PREFIX) --destdir "$(DESTDIR)"

## deb: the Debian package, target/deb/ztd_<version>_<arch>.deb
deb: release
	bash mk/deb.sh --bin-dir $(RELEASE_BIN)

## images: the test app image (FROM scratch, one static binary) and the proxy image (Debian's
## nginx on an assembled rootfs), reused by tests and the demo
images: testapp-image proxy-image

testapp-image:
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release -p ztd-testapp --target $(HOST_TRIPLE)
	mkdir -p $(IMAGE_DIR)/testapp
	cp images/testapp/Dockerfile $(IMAGE_DIR)/testapp/Dockerfile
	cp target/$(HOST_TRIPLE)/release/ztd-testapp $(IMAGE_DIR)/testapp/ztd-testapp
	docker build -q -t $(TESTAPP_IMAGE) $(IMAGE_DIR)/testapp >/dev/null 2>&1 || docker build -t $(TESTAPP_IMAGE) $(IMAGE_DIR)/testapp
	@echo "built $(TESTAPP_IMAGE)"

## proxy-image: ztd-nginx:latest (ZTD_PROXY_IMAGE overrides), skipped when already up to date
proxy-image:
	bash images/nginx/build.sh

## deploy: the whole pipeline on PROJECT_DIR: detect | up | health --wait | monitor | switch |
## monitor, each watch window MIGRATION_GRACE_PERIOD (30 s) long; when a stage fails or a window
## trips, ztd-rollback puts the stack back (and the target fails)
deploy: build
	cd $(PROJECT_DIR) && { ztd-detect </dev/null | ztd-up | ztd-health --wait | ztd-monitor --for \
	  | ztd-switch | ztd-monitor --for || { ztd-rollback </dev/null; exit 1; }; }

## rollback: back to the previous color of PROJECT_DIR (or undo an interrupted switch)
rollback: build
	cd $(PROJECT_DIR) && ztd-rollback </dev/null

## cleanup: remove COLOR (not the active one) from PROJECT_DIR
cleanup: build
	@test -n "$(COLOR)" || { echo "usage: make cleanup COLOR=blue|green" >&2; exit 2; }
	cd $(PROJECT_DIR) && ztd-rollback --cleanup $(COLOR) </dev/null

## status: what is deployed in PROJECT_DIR, and which color is active
status: build
	cd $(PROJECT_DIR) && ztd-detect </dev/null

## health: the health of the active color of PROJECT_DIR (COLOR= for another)
health: build
	cd $(PROJECT_DIR) && ztd-health $(COLOR) </dev/null

## up: deploy PROJECT_DIR to the standby color, without switching
up: build
	cd $(PROJECT_DIR) && ztd-up $(COLOR) </dev/null

## monitor: watch PROJECT_DIR (the live view on a terminal, else a JSON stream)
monitor: build
	cd $(PROJECT_DIR) && ztd-monitor $(COLOR) </dev/null

## switch: make the deployed standby of PROJECT_DIR active (COLOR= to name it)
switch: build
	cd $(PROJECT_DIR) && ztd-switch $(COLOR) </dev/null

## demo: deploy the bundled example twice under load, on a machine with only a Docker engine
demo: setup build images
	bash examples/demo.sh

## demo-clean: remove the demo's containers, networks, volumes and files
demo-clean:
	bash examples/demo.sh --clean

## setup: bring a Docker engine that answers and Compose v2 (the docker compose plugin) onto this
## machine when missing (mk/ensure-host.sh; `make demo` runs it)
setup:
	bash mk/ensure-host.sh

## setup-tests: as setup, and what the tests use beside (openssl); `make test` runs it
setup-tests:
	bash mk/ensure-host.sh --tests

## test: format check, clippy with -D warnings, unit tests and tests against the real engine
test: setup-tests fmt-check clippy images
	$(CARGO) build --workspace --bins $(DEV_FEATURES)
	ZTD_REQUIRE_ENGINE=1 $(CARGO) test --workspace $(DEV_FEATURES) -- --test-threads=4

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets $(DEV_FEATURES) -- -D warnings
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## unit: the tests that need no Docker engine
unit:
	$(CARGO) test --workspace --lib --bins $(DEV_FEATURES)

## bench: speed of ztd-detect, ztd-health and a deploy, each against a baseline in the same run
bench: release images
	bash bench/run.sh
	bash bench/deploy.sh
	bash bench/monitor.sh

## bench-swarm: the Swarm figures of the README, on a 3-node test bed made here (root)
bench-swarm: release images
	bash bench/swarm.sh

clean:
	$(CARGO) clean
