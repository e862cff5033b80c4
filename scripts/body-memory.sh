#!/usr/bin/env bash
# body-memory.sh BINARY [CONCURRENCY] measures what full-size batch bodies
# cost a taskd process in memory: it starts BINARY (`taskd serve`) on a
# fresh database, sends CONCURRENCY (default 8) concurrent 16 MiB batches of
# 10,000 tasks, and prints the process's resident memory before and at its
# peak (VmHWM), with the status of every answer. Run it for two binaries
# back to back to compare them (docs/API.md, "Limits", has the figures).
#
# DATABASE_URL is an admin URL of a local server (default: scripts/devdb.sh
# postgres); a database taskd_bodymem is created and dropped there.
set -euo pipefail

bin=${1:?usage: body-memory.sh BINARY [CONCURRENCY]}
conc=${2:-8}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
admin=${DATABASE_URL:-$("$repo/scripts/devdb.sh" postgres)}
db=taskd_bodymem
url=${admin%/*}/$db?sslmode=disable
tmp=$(mktemp -d)
pid=
cleanup() {
	[[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	psql -q "$admin" -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT

psql -q "$admin" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null

# 10,000 "fail" tasks whose messages pad the body to just under 16 MiB.
python3 - "$tmp/batch.json" <<'EOF'
import json, sys
limit = 16 << 20
item = lambda pad: {"kind": "fail", "args": {"times": 0, "message": "x" * pad}}
pad = (limit - 20) // 10000 - len(json.dumps(item(0), separators=(",", ":"))) - 1
body = json.dumps({"tasks": [item(pad)] * 10000}, separators=(",", ":"))
assert len(body) <= limit, len(body)
open(sys.argv[1], "w").write(body)
EOF

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
DATABASE_URL=$url TASKD_ADDR=127.0.0.1:$port TASKD_UI=false TASKD_QUEUES=default=1 \
	"$bin" serve --migrate >"$tmp/taskd.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
	curl -sf "localhost:$port/readyz" >/dev/null && break
	sleep 0.1
done
rss() { awk -v k="$1:" '$1 == k {print $2 / 1024}' "/proc/$pid/status"; }
printf 'binary %s, %d concurrent batches of %d bytes\n' "$bin" "$conc" "$(stat -c %s "$tmp/batch.json")"
printf 'resident before: %.0f MB\n' "$(rss VmRSS)"
# One worker, so that running the tasks adds little beside reading,
# decoding and inserting the batches.
curls=()
for i in $(seq "$conc"); do
	curl -s -o /dev/null -w '%{http_code}\n' --data-binary @"$tmp/batch.json" "localhost:$port/v1/batches" >"$tmp/status.$i" &
	curls+=($!)
done
wait "${curls[@]}"
printf 'resident peak:   %.0f MB\n' "$(rss VmHWM)"
printf 'answers: %s\n' "$(sort "$tmp"/status.* | uniq -c | tr -s ' ' | paste -sd ',')"
