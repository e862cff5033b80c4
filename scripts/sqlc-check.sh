#!/usr/bin/env bash
# sqlc-check.sh fails if the code sqlc generates differs from the code in the
# work tree, that is if `make generate` was not run after changing queries or
# migrations. Without a sqlc.yaml it skips and exits 0.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ ! -f sqlc.yaml && ! -f sqlc.yml && ! -f sqlc.json ]]; then
	echo "sqlc-check: no sqlc.yaml yet, skipping" >&2
	exit 0
fi

if ! scripts/sqlc.sh diff; then
	echo "sqlc-check: generated code is out of date; run 'make generate' and commit the result" >&2
	exit 1
fi
echo "sqlc-check: generated code is up to date" >&2
