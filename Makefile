# ztd: build, test and demo. `make test` is the test command; `make demo` the first thing to run.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build
.DELETE_ON_ERROR:

CARGO ?= cargo
HOST_TRIPLE := $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')
TOOLS := ztd-detect ztd-health ztd-up ztd-switch
BIN := target/debug
RELEASE_BIN := target/release
IMAGE_DIR := target/images
TESTAPP_IMAGE ?= ztd-testapp:latest

.PHONY: build release images testapp-image proxy-image test lint fmt-check clippy unit bench clean

## build: the tools, debug profile
build:
	$(CARGO) build --workspace --bins

## release: the tools, optimised and stripped
release:
	$(CARGO) build --release --workspace --bins

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

## test: format check, clippy with -D warnings, unit tests and tests against the real engine
test: fmt-check clippy images
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace -- --test-threads=6

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## unit: the tests that need no Docker engine
unit:
	$(CARGO) test --workspace --lib --bins

## bench: speed figures of ztd-detect and ztd-health against a shell baseline, in one run
bench: release images
	bash bench/run.sh

clean:
	$(CARGO) clean
