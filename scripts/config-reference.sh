#!/usr/bin/env bash
# Replaces the configuration table in README.md (the block of lines starting
# with "| YAML key / flag") with what `bin/chorus config reference` prints.
set -euo pipefail
cd "$(dirname "$0")/.."
table=$(mktemp)
trap 'rm -f "$table"' EXIT
./bin/chorus config reference > "$table"
awk -v table="$table" '
  /^\| YAML key \/ flag / { while ((getline line < table) > 0) print line; skipping = 1; next }
  skipping && /^\|/ { next }
  { skipping = 0; print }
' README.md > README.md.new
mv README.md.new README.md
