#!/bin/sh
# Prepares, without any image registry, every image docker-compose.yml names,
# under the same names (make compose-images):
#   debian:bookworm-slim   debootstrap from Debian's mirror, imported
#   golang:1.26-bookworm   that plus this machine's Go toolchain
#   redis:7.0-bookworm     that plus Debian's redis-server
#   chorus:latest          the repository's Dockerfile, built on those
# Images already present are kept (FORCE=1 rebuilds them). On a machine with
# a registry none of this is needed: docker compose pulls and builds.
set -eu
cd "$(dirname "$0")/.."

CHORUS_IMAGE=${CHORUS_IMAGE:-chorus:latest}
GO_IMAGE=golang:1.26-bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
FORCE=${FORCE:-0}
export DOCKER_BUILDKIT=0 # the classic builder: no buildx plugin needed

have() { [ "$FORCE" = 0 ] && docker image inspect "$1" >/dev/null 2>&1; }
step() { echo "==> $*"; }

if ! have debian:bookworm-slim; then
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

# The Chorus image is always rebuilt (the layer cache makes it quick when
# nothing changed), so that it matches the checkout.
step "$CHORUS_IMAGE from the Dockerfile"
docker build -q -t "$CHORUS_IMAGE" --build-arg "GOPROXY=$(go env GOPROXY)" . >/dev/null
docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E '^(debian:bookworm-slim|golang:1.26-bookworm|redis:7.0-bookworm|'"$CHORUS_IMAGE"')' || true
