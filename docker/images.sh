#!/bin/sh
# Prepares, without any image registry, every image docker-compose.yml names,
# under the same names (make compose-images):
#   debian:bookworm-slim   debootstrap from this machine's Debian mirror, imported
#   golang:1.26-bookworm   that plus this machine's Go toolchain
#   redis:7.0-bookworm     that plus Debian's redis-server
#   prometheus:chorus      that plus Debian's prometheus (the monitoring profile)
#   chorus-swarm-host:latest  that plus Debian's docker.io: one host of the
#                          Swarm test bed (docker/swarm.sh)
#   chorus:latest          the repository's Dockerfile, built on those, with
#                          the binary built here (CHORUS_PREBUILT)
#   chorus-recorder:latest its recorder target (FFmpeg; the recording profile)
# Images already present are kept (FORCE=1 rebuilds them). On a machine with
# a registry none of this is needed: docker compose pulls and builds.
#
# Package hosts come from this machine, never from this repository: the
# Debian mirror from its apt sources (or DEBIAN_MIRROR), the Go module proxy
# from `go env GOPROXY` (or GOPROXY), the npm registry from
# `npm config get registry` (or NPM_REGISTRY).
set -eu
cd "$(dirname "$0")/.."

CHORUS_IMAGE=${CHORUS_IMAGE:-chorus:latest}
RECORDER_IMAGE=${CHORUS_RECORDER_IMAGE:-chorus-recorder:latest}
GO_IMAGE=golang:1.26-bookworm
SUITE=bookworm
FORCE=${FORCE:-0}

# apt_mirror prints the URI of the first enabled deb source of this machine
# that serves suite $1 (one-line sources.list entries and deb822 .sources
# files alike).
apt_mirror() {
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		awk -v suite="$1" '
			$1 == "deb" {
				i = 2
				if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
				if ($(i + 1) == suite) { print $i; exit }
			}' "$f"
	done
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk -v suite="$1" '
			function flush() {
				if (types ~ /(^| )deb( |$)/ && enabled != "no" && (" " suites " ") ~ (" " suite " ") && uri != "") { print uri; found = 1 }
				types = ""; suites = ""; uri = ""; enabled = ""
			}
			/^[ \t]*$/ { flush(); if (found) exit; next }
			/^Types:/ { sub(/^Types:[ \t]*/, ""); types = $0 }
			/^URIs:/ { sub(/^URIs:[ \t]*/, ""); split($0, u, /[ \t]+/); uri = u[1] }
			/^Suites:/ { sub(/^Suites:[ \t]*/, ""); suites = $0 }
			/^Enabled:/ { sub(/^Enabled:[ \t]*/, ""); enabled = $0 }
			END { if (!found) flush() }' "$f"
	done
}

MIRROR=${DEBIAN_MIRROR:-$(apt_mirror "$SUITE" | head -1)}
GOPROXY=${GOPROXY:-$(go env GOPROXY)}
NPM_REGISTRY=${NPM_REGISTRY:-$(command -v npm >/dev/null && npm config get registry || true)}
export DOCKER_BUILDKIT=0 # the classic builder: no buildx plugin needed

have() { [ "$FORCE" = 0 ] && docker image inspect "$1" >/dev/null 2>&1; }
step() { echo "==> $*"; }

if ! have debian:bookworm-slim; then
	if [ -z "$MIRROR" ]; then
		echo "no apt source of this machine serves Debian $SUITE: set DEBIAN_MIRROR to a Debian mirror's URL" >&2
		exit 1
	fi
	step "debian:bookworm-slim from debootstrap ($MIRROR)"
	command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install debootstrap" >&2; exit 1; }
	root=$(mktemp -d)
	trap 'rm -rf "$root"' EXIT
	debootstrap --variant=minbase --include=ca-certificates bookworm "$root" "$MIRROR" >/dev/null
	rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
	# Trust what this machine trusts: where egress goes through a TLS
	# inspecting proxy, its CA is needed by apt, go and curl in the builds.
	if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
		cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
		cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
	fi
	tar -C "$root" -c . | docker import --change 'CMD ["bash"]' - debian:bookworm-slim >/dev/null
	rm -rf "$root"
	trap - EXIT
fi

if ! have "$GO_IMAGE"; then
	goroot=$(go env GOROOT)
	step "$GO_IMAGE from $goroot ($(go env GOVERSION))"
	docker build -q -t "$GO_IMAGE" -f docker/golang.Dockerfile "$goroot" >/dev/null
fi

if ! have redis:7.0-bookworm; then
	step "redis:7.0-bookworm from Debian's redis-server"
	docker build -q -t redis:7.0-bookworm -f docker/redis.Dockerfile docker >/dev/null
fi

if ! have prometheus:chorus; then
	step "prometheus:chorus from Debian's prometheus"
	docker build -q -t prometheus:chorus -f docker/prometheus.Dockerfile docker >/dev/null
fi

if ! have chorus-swarm-host:latest; then
	step "chorus-swarm-host:latest from Debian's docker.io (the Swarm test bed's hosts)"
	docker build -q -t chorus-swarm-host:latest -f docker/swarm-host.Dockerfile docker >/dev/null
fi

# The Chorus image is always rebuilt (the layer cache makes it quick when
# nothing changed), so that it matches the checkout.
step "$CHORUS_IMAGE from the Dockerfile"
if [ -z "$NPM_REGISTRY" ]; then
	echo "no npm registry: install npm (its \`npm config get registry\` is used) or set NPM_REGISTRY" >&2
	exit 1
fi
# The binary is built here, by the Go toolchain the golang image was made
# from and with the Dockerfile's flags, and handed to the build
# (CHORUS_PREBUILT): this machine's Go build cache makes that seconds, where
# the classic builder, which has no cache mounts, compiles every package
# again on each change (3.5 min on 2 cores).
prebuilt=.prebuilt/chorus
CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOPROXY=$GOPROXY go build -trimpath -ldflags="-s -w" -o "$prebuilt" ./cmd/chorus
docker build -q -t "$CHORUS_IMAGE" --build-arg "GOPROXY=$GOPROXY" --build-arg "NPM_REGISTRY=$NPM_REGISTRY" --build-arg "CHORUS_PREBUILT=$prebuilt" . >/dev/null
step "$RECORDER_IMAGE from the Dockerfile's recorder target (Debian's FFmpeg)"
docker build -q -t "$RECORDER_IMAGE" --target recorder --build-arg "GOPROXY=$GOPROXY" --build-arg "NPM_REGISTRY=$NPM_REGISTRY" --build-arg "CHORUS_PREBUILT=$prebuilt" . >/dev/null
rm -rf .prebuilt
docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E '^(debian:bookworm-slim|golang:1.26-bookworm|redis:7.0-bookworm|prometheus:chorus|chorus-swarm-host:latest|'"$CHORUS_IMAGE|$RECORDER_IMAGE"')' || true
