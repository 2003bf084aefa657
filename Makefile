# Chorus: `make dev` runs a local HA cluster, `make test` runs every test CI runs.
SHELL := /bin/bash
GO ?= go
BIN := bin/chorus
GOTEST_FLAGS ?= -count=1
# The end-to-end packages (build tag e2e) run one at a time: the machine has 2 cores.
# They run verbose, so that CI's output shows each test's duration and the
# figures the tests log (recovery times, layer switches).
E2E_PKGS := ./e2e/...
E2E_FLAGS := -tags e2e -p 1 -v
UNIT_PKGS := ./...
# Packages whose Redis tests run a second time on one Redis Cluster
# (CHORUS_TEST_REDIS=cluster), and the end-to-end scenarios rerun on
# `chorus dev --redis-cluster` (CHORUS_E2E_REDIS=cluster): REST,
# openvidu-browser, events, master and media node crashes.
REDIS_CLUSTER_PKGS := ./shared/store/
REDIS_CLUSTER_E2E := ^(TestOpenViduNodeClient|TestOpenViduBrowsers|TestWebhookEventsOfABrowserSession|TestEventsAtLeastOnceAcrossMasterCrashes|TestMasterCrashesAreInvisible|TestMediaNodeCrashMigration)$$
# Tests fail, rather than skip, when a system dependency (redis-server) is missing.
export CHORUS_TEST_REQUIRE_DEPS := 1
# golangci-lint, installed into bin/ from the Go module proxy at this version.
GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT := bin/golangci-lint
# govulncheck, likewise; its vulnerability database is fetched when it runs
# (GOVULNDB: another copy), and the check is skipped when it is unreachable.
GOVULNCHECK_VERSION := v1.1.4
GOVULNCHECK := bin/govulncheck

.PHONY: all build web deps docker-engine compose-images swarm-up swarm-down dev test test-quick test-e2e test-e2e-redis-cluster fuzz lint lint-tool vulncheck vulncheck-tool clean config-reference

all: build

build:
	$(GO) build -o $(BIN) ./cmd/chorus

# npm packages of the demo page and the end-to-end tests (not committed).
web: web/node_modules/.installed
web/node_modules/.installed: web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund
	touch $@

# System packages the tests need, installed when missing (Debian): ip and
# nft make the network namespaces of the firewall tests (e2e/netns_test.go);
# promtool (Debian's prometheus) checks the metrics' format.
deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v node >/dev/null || missing="$$missing nodejs npm"; \
	command -v ffmpeg >/dev/null || missing="$$missing ffmpeg"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v ip >/dev/null || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || missing="$$missing iproute2"; \
	command -v nft >/dev/null || [ -x /usr/sbin/nft ] || missing="$$missing nftables"; \
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

# A Chorus cluster on a Docker Swarm of three Docker-in-Docker hosts on this
# machine (docker/swarm.sh; README, "Docker Swarm"): docker/swarm.sh env
# prints its URL and secret. swarm-down removes it all.
swarm-up: compose-images
	./docker/swarm.sh up
	./docker/swarm.sh env

swarm-down:
	./docker/swarm.sh down

dev: deps build web
	./$(BIN) dev

test-quick:
	$(GO) test $(GOTEST_FLAGS) $(UNIT_PKGS)
	CHORUS_TEST_REDIS=cluster $(GO) test $(GOTEST_FLAGS) $(REDIS_CLUSTER_PKGS)

test-e2e: build web compose-images
	CHORUS_BIN=$(abspath $(BIN)) $(GO) test $(GOTEST_FLAGS) $(E2E_FLAGS) -timeout 35m $(E2E_PKGS)

test-e2e-redis-cluster: build web
	CHORUS_E2E_REDIS=cluster CHORUS_BIN=$(abspath $(BIN)) $(GO) test $(GOTEST_FLAGS) $(E2E_FLAGS) -timeout 10m -run '$(REDIS_CLUSTER_E2E)' $(E2E_PKGS)

test: deps lint build web compose-images
	$(GO) test $(GOTEST_FLAGS) -timeout 15m $(UNIT_PKGS)
	CHORUS_TEST_REDIS=cluster $(GO) test $(GOTEST_FLAGS) -timeout 5m $(REDIS_CLUSTER_PKGS)
	CHORUS_BIN=$(abspath $(BIN)) $(GO) test $(GOTEST_FLAGS) $(E2E_FLAGS) -timeout 35m $(E2E_PKGS)
	CHORUS_E2E_REDIS=cluster CHORUS_BIN=$(abspath $(BIN)) $(GO) test $(GOTEST_FLAGS) $(E2E_FLAGS) -timeout 10m -run '$(REDIS_CLUSTER_E2E)' $(E2E_PKGS)

# Short fuzzing runs of every fuzz target (the seed corpora also run in make test).
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecodeRequest -fuzztime 20s ./shared/protocol
	$(GO) test -run '^$$' -fuzz FuzzSessionProperties -fuzztime 20s ./master/restapi
	$(GO) test -run '^$$' -fuzz FuzzConnectionProperties -fuzztime 20s ./master/restapi
	$(GO) test -run '^$$' -fuzz FuzzSignal -fuzztime 20s ./master/restapi
	$(GO) test -run '^$$' -fuzz FuzzParseUsername -fuzztime 20s ./shared/turncred
	$(GO) test -run '^$$' -fuzz FuzzRelayFilter -fuzztime 20s ./turn
	$(GO) test -run '^$$' -fuzz FuzzParseToken -fuzztime 20s ./master/session
	$(GO) test -run '^$$' -fuzz FuzzJoinRoomParams -fuzztime 20s ./shared/protocol
	$(GO) test -run '^$$' -fuzz FuzzOfferedKinds -fuzztime 20s ./medianode/sfu

# gofmt, vet, staticcheck, the layering rules (depguard) and the rest of
# .golangci.yml, over every package including the e2e-tagged ones; then
# govulncheck when its database is reachable.
lint: lint-tool vulncheck
	$(GOLANGCI_LINT) run ./...

vulncheck: vulncheck-tool
	GOVULNCHECK=$(GOVULNCHECK) ./scripts/vulncheck.sh

lint-tool:
	@if ! $(GOLANGCI_LINT) version 2>/dev/null | grep -q "version $(GOLANGCI_LINT_VERSION:v%=%) "; then \
		echo "installing golangci-lint $(GOLANGCI_LINT_VERSION) into bin/"; \
		GOBIN=$(abspath bin) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION); \
	fi

vulncheck-tool:
	@if ! $(GOVULNCHECK) -version 2>/dev/null | grep -q "govulncheck@$(GOVULNCHECK_VERSION)"; then \
		echo "installing govulncheck $(GOVULNCHECK_VERSION) into bin/"; \
		GOBIN=$(abspath bin) $(GO) install golang.org/x/vuln/cmd/govulncheck@$(GOVULNCHECK_VERSION) || \
			echo "govulncheck could not be installed: make vulncheck will skip"; \
	fi

# Rewrites README.md's configuration table from the settings table (keys.go).
config-reference: build
	./scripts/config-reference.sh

clean:
	rm -rf bin web/node_modules
