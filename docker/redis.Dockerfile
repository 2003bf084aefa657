# A stand-in for redis:7.0-bookworm, for machines that reach no image
# registry: Debian's redis-server (7.0) with the official image's layout
# (/data, port 6379, redis-server as the command). Built by docker/images.sh.
FROM debian:bookworm-slim
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir /data && chown redis:redis /data
WORKDIR /data
USER redis
EXPOSE 6379
CMD ["redis-server", "--protected-mode", "no"]
