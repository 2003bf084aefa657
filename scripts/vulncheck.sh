#!/usr/bin/env bash
# make lint's vulnerability check: govulncheck (installed into bin/ by the
# Makefile) over every package. Its vulnerability database is fetched at run
# time; where it cannot be reached (machines that reach only package
# registries) the check is skipped with a message, not failed. GOVULNDB
# names another copy of the database (govulncheck -db, e.g. file:///srv/vulndb).
#   exit 0: no known vulnerability reached by the code, or skipped
#   exit 1: vulnerabilities found, or govulncheck failed otherwise
set -uo pipefail
cd "$(dirname "$0")/.."
bin=${GOVULNCHECK:-bin/govulncheck}
if [ ! -x "$bin" ]; then
	echo "govulncheck: skipped: $bin could not be installed (is the Go module proxy reachable?)"
	exit 0
fi
args=()
[ -n "${GOVULNDB:-}" ] && args=(-db "$GOVULNDB")
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$bin" "${args[@]}" ./... >"$out" 2>&1
status=$?
case $status in
0)
	tail -1 "$out"
	;;
3)
	cat "$out"
	echo "govulncheck: the code reaches known vulnerabilities (above)" >&2
	exit 1
	;;
*)
	if grep -q "fetching vulnerabilities" "$out"; then
		echo "govulncheck: skipped: its vulnerability database is not reachable from here:"
		sed 's/^/  /' "$out"
		echo "  (set GOVULNDB to a reachable copy to run the check)"
		exit 0
	fi
	cat "$out" >&2
	exit 1
	;;
esac
