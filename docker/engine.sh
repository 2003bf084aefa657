#!/bin/sh
# Makes sure a Docker engine answers (make docker-engine): installs Debian's
# docker.io, docker-compose and debootstrap when missing and, when no engine
# runs, starts dockerd in the background (its log: /var/log/chorus-dockerd.log).
set -eu
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
missing=""
command -v dockerd >/dev/null || missing="$missing docker.io"
command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 || missing="$missing docker-compose"
command -v debootstrap >/dev/null || missing="$missing debootstrap"
if [ -n "$missing" ]; then
	echo "installing:$missing"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
if docker info >/dev/null 2>&1; then
	exit 0
fi
if command -v systemctl >/dev/null && systemctl start docker 2>/dev/null && docker info >/dev/null 2>&1; then
	exit 0
fi
echo "starting dockerd"
# dockerd outlives this script: it must not keep our descriptors above 2
# open (a caller's lock file, a pipe its caller waits on).
$SUDO sh -c 'nohup dockerd >/var/log/chorus-dockerd.log 2>&1 </dev/null 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- &'
i=0
until docker info >/dev/null 2>&1; do
	i=$((i + 1))
	if [ $i -gt 60 ]; then
		echo "dockerd did not start; its log:" >&2
		tail -20 /var/log/chorus-dockerd.log >&2
		exit 1
	fi
	sleep 0.5
done
