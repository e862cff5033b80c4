#!/usr/bin/env bash
# sqlc.sh ARGS... runs sqlc, pinned to the version below, from the repository
# root, installing it with `go install` first if the installed one is missing
# or another version. Without a sqlc.yaml it does nothing and exits 0.
set -euo pipefail

version=v1.31.1

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ ! -f sqlc.yaml && ! -f sqlc.yml && ! -f sqlc.json ]]; then
	echo "sqlc: no sqlc.yaml in $(pwd), skipping sqlc $*" >&2
	exit 0
fi

bindir=$(go env GOBIN)
if [[ -z $bindir ]]; then
	gopath=$(go env GOPATH)
	bindir=${gopath%%:*}/bin
fi
sqlc=$bindir/sqlc

if [[ ! -x $sqlc || $("$sqlc" version 2>/dev/null || true) != "$version" ]]; then
	echo "sqlc: installing sqlc $version into $bindir (this compiles libpg_query and takes a few minutes)" >&2
	go install "github.com/sqlc-dev/sqlc/cmd/sqlc@$version"
fi

exec "$sqlc" "$@"
