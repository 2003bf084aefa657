# Chorus: `make dev` runs a local HA cluster, `make test` runs every test CI runs.
SHELL := /bin/bash
GO ?= go
BIN := bin/chorus
GOTEST_FLAGS ?= -count=1
# The end-to-end packages run one at a time: the machine has 2 cores.
E2E_PKGS := ./e2e/...
UNIT_PKGS := $(shell $(GO) list ./... 2>/dev/null | grep -v /e2e)

.PHONY: all build web deps docker-engine compose-images dev test test-quick test-e2e fuzz lint clean config-reference

all: build

build:
	$(GO) build -o $(BIN) ./cmd/chorus

# npm packages of the demo page and the end-to-end tests (not committed).
web: web/node_modules/.installed
web/node_modules/.installed: web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund
	touch $@

# System packages the tests need, installed when missing (Debian).
deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v node >/dev/null || missing="$$missing nodejs npm"; \
	command -v ffmpeg >/dev/null || missing="$$missing ffmpeg"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

# A Docker engine (installed and started when missing) and the images
# docker-compose.yml names, made without a registry (docker/images.sh).
docker-engine:
	./docker/engine.sh

compose-images: docker-engine
	./docker/images.sh

dev: deps build web
	./$(BIN) dev

test-quick:
	$(GO) test $(GOTEST_FLAGS) $(UNIT_PKGS)

test-e2e: build web compose-images
	CHORUS_BIN=$(abspath $(BIN)) $(GO) test $(GOTEST_FLAGS) -p 1 -timeout 25m $(E2E_PKGS)

test: deps lint build web compose-images
	$(GO) test $(GOTEST_FLAGS) -timeout 15m $(UNIT_PKGS)
	CHORUS_BIN=$(abspath $(BIN)) $(GO) test $(GOTEST_FLAGS) -p 1 -timeout 25m $(E2E_PKGS)

# Short fuzzing runs of every fuzz target (the seed corpora also run in make test).
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecodeRequest -fuzztime 20s ./shared/protocol
	$(GO) test -run '^$$' -fuzz FuzzSessionProperties -fuzztime 20s ./master/restapi
	$(GO) test -run '^$$' -fuzz FuzzConnectionProperties -fuzztime 20s ./master/restapi
	$(GO) test -run '^$$' -fuzz FuzzSignal -fuzztime 20s ./master/restapi

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Rewrites README.md's configuration table from the settings table (keys.go).
config-reference: build
	./scripts/config-reference.sh

clean:
	rm -rf bin web/node_modules
