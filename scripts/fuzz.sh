#!/usr/bin/env bash
# fuzz.sh runs every fuzz target for a short while (FUZZTIME, default 3s
# each): the targets of internal/http send fuzzed bodies, queries and
# headers through the real handler on a real database (no panic, no 5xx);
# FuzzParseQuery and those of internal/strictjson fuzz pure decoders (and
# FuzzCanonical the canonical form of keyed bodies against encoding/json's), and
# FuzzAppendTask and FuzzDecodeAttempts the encoder of task answers and the
# decoder of their attempts against encoding/json. Two
# workers per target, since the machine and its PostgreSQL server are
# shared. A
# failing input is written under the package's testdata/fuzz/<Target>/:
# commit it with the fix, and plain `go test` keeps checking it.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

fuzztime=${FUZZTIME:-3s}
targets=(
	./internal/http:FuzzTaskCreate
	./internal/http:FuzzIdempotencyKey
	./internal/http:FuzzBatchCreate
	./internal/http:FuzzDecodeBatch
	./internal/http:FuzzTaskList
	./internal/http:FuzzTaskWait
	./internal/http:FuzzClaim
	./internal/http:FuzzParseQuery
	./internal/http:FuzzAppendTask
	./internal/store:FuzzDecodeAttempts
	./internal/strictjson:FuzzScan
	./internal/strictjson:FuzzIntegerText
	./internal/strictjson:FuzzCanonical
	./internal/strictjson:FuzzDecodeFast
)
for t in "${targets[@]}"; do
	pkg=${t%%:*} name=${t##*:}
	echo "fuzz: $name ($pkg) for $fuzztime" >&2
	go test -run='^$' -fuzz="^${name}\$" -fuzztime="$fuzztime" -parallel=2 "$pkg"
done
