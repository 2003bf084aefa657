# The Chorus image: one static binary for every role (master, media, proxy),
# the demo page and openvidu-browser's bundle, on an empty base.
#   docker build -t chorus:latest --build-arg GOPROXY="$(go env GOPROXY)" \
#     --build-arg NPM_REGISTRY="$(npm config get registry)" .
# The package hosts come from the build environment, never from this file.
# Without a registry, `make compose-images` provides the two base images
# and passes both (see docker/images.sh).

ARG GO_IMAGE=golang:1.26-bookworm
ARG DEBIAN_IMAGE=debian:bookworm-slim

FROM ${GO_IMAGE} AS build
WORKDIR /src
# The Go module proxy of the build environment (`go env GOPROXY`); empty:
# the Go toolchain's default.
ARG GOPROXY
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOPROXY=${GOPROXY}
# The demo page's openvidu-browser bundle, from the npm registry of the build
# environment (`npm config get registry`), checked against the sha512 of
# web/package-lock.json whatever registry serves it. Before the sources are
# copied, so that a change to them does not fetch it again.
ARG NPM_REGISTRY
ARG OPENVIDU_BROWSER=2.32.2
ARG OPENVIDU_BROWSER_SHA512=4570a6d65351d98c00640aac63bf88affceec99fc2969be37d93a3016ddf735ec3c87348d2a15f9af17f571ae4e361045f76dac8a8558421164254aaa21ca56b
# uPlot, the Inspector's charts, the same way.
ARG UPLOT=1.6.32
ARG UPLOT_SHA512=2883159c6ebccefbb95d751b0b82d010f9e1c0ec41b8bc96d401eda66e882935c89a46cb824332fa369b8cb8122cc6ac36e186cd09bf7a9ded3a4c93c6989023
RUN if [ -z "${NPM_REGISTRY}" ]; then \
      echo 'NPM_REGISTRY is not set: build with --build-arg NPM_REGISTRY="$(npm config get registry)" (docker compose: export NPM_REGISTRY)' >&2; exit 1; \
    fi \
 && curl -fsSL -o /tmp/ovb.tgz "${NPM_REGISTRY%/}/openvidu-browser/-/openvidu-browser-${OPENVIDU_BROWSER}.tgz" \
 && echo "${OPENVIDU_BROWSER_SHA512}  /tmp/ovb.tgz" | sha512sum -c - \
 && mkdir -p /out/web/node_modules/openvidu-browser \
 && tar -xzf /tmp/ovb.tgz -C /out/web/node_modules/openvidu-browser --strip-components=1 package/static/js \
 && curl -fsSL -o /tmp/uplot.tgz "${NPM_REGISTRY%/}/uplot/-/uplot-${UPLOT}.tgz" \
 && echo "${UPLOT_SHA512}  /tmp/uplot.tgz" | sha512sum -c - \
 && mkdir -p /out/web/node_modules/uplot \
 && tar -xzf /tmp/uplot.tgz -C /out/web/node_modules/uplot --strip-components=1 package/dist/uPlot.iife.min.js package/dist/uPlot.min.css package/LICENSE \
 && rm /tmp/ovb.tgz /tmp/uplot.tgz \
 && mkdir -p /out/var/lib/chorus/tls /out/var/lib/chorus/turn-tls /out/tmp /out/opt/openvidu/recordings \
 && echo 'chorus:x:10001:10001:chorus:/var/lib/chorus:/nonexistent' > /out/passwd \
 && echo 'chorus:x:10001:' > /out/group
# CHORUS_PREBUILT: the context's path of a binary built outside by the same
# Go toolchain with these flags (docker/images.sh does, with its machine's
# build cache); without it the modules are downloaded and the binary
# compiled here.
ARG CHORUS_PREBUILT=
COPY go.mod go.sum ./
RUN if [ -z "${CHORUS_PREBUILT}" ]; then go mod download; fi
COPY . .
RUN if [ -n "${CHORUS_PREBUILT}" ]; then install -D -m 0755 "${CHORUS_PREBUILT}" /out/chorus; \
    else go build -trimpath -ldflags="-s -w" -o /out/chorus ./cmd/chorus; fi \
 && cp -r web/demo /out/web/demo \
 && cp -r web/inspector /out/web/inspector

# The recorder (--target recorder, chorus-recorder:latest): the same binary
# beside Debian's FFmpeg, which renders recordings; the other roles keep the
# small image below.
FROM ${DEBIAN_IMAGE} AS recorder
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ffmpeg ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd -g 10001 chorus && useradd -u 10001 -g 10001 -d /var/lib/chorus -s /usr/sbin/nologin chorus \
 && mkdir -p /opt/openvidu/recordings /var/lib/chorus \
 && chown 10001:10001 /opt/openvidu/recordings /var/lib/chorus
COPY --from=build /out/chorus /usr/local/bin/chorus
USER 10001:10001
WORKDIR /var/lib/chorus
ENTRYPOINT ["/usr/local/bin/chorus"]
CMD ["recorder"]

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/
COPY --from=build /out/passwd /out/group /etc/
COPY --from=build --chown=10001:10001 /out/var /var
COPY --from=build --chown=10001:10001 /out/tmp /tmp
# The recordings volume's mount point, the recorder's user owning it
# whichever container first populates the volume.
COPY --from=build --chown=10001:10001 /out/opt /opt
COPY --from=build /out/web /srv/chorus/web
COPY --from=build /out/chorus /usr/local/bin/chorus
USER 10001:10001
WORKDIR /var/lib/chorus
ENV CHORUS_PROXY_DEMO_ASSETS_DIR=/srv/chorus/web
EXPOSE 4443 5443 8888
ENTRYPOINT ["/usr/local/bin/chorus"]
CMD ["--help"]
