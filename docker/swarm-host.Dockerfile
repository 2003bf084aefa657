# A stand-in for one machine of a Docker Swarm, for the multi-host test bed
# on a single machine (make swarm-up, e2e TestSwarm*): Debian's Docker
# engine (docker.io) in a container, run with the capabilities of
# docker/swarm.sh (everything but CAP_SYS_RESOURCE, no seccomp or AppArmor
# profile, the cgroup tree, a volume on /var/lib/docker). Built by
# docker/images.sh from debian:bookworm-slim, offline like the other images.
FROM debian:bookworm-slim
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      docker.io iptables iproute2 procps ca-certificates \
 && rm -rf /var/lib/apt/lists/*
VOLUME /var/lib/docker
# The engine answers on its socket only: docker/swarm.sh drives it through
# `docker exec`, so no unauthenticated TCP API is ever opened.
CMD ["dockerd", "--storage-driver", "overlay2", "--log-level", "warn"]
