#!/usr/bin/env bash
# idle-load.sh measures what one idle `taskd serve` costs the database:
# transactions per second in pg_stat_database over 30 s, after a 15 s
# settle, for several FetchPollInterval values. Uses the PostgreSQL of
# scripts/devdb.sh (or DATABASE_URL as admin URL) and creates and drops its
# own databases. See docs/PERFORMANCE.md, "Fetch settings and queue sizes".
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

admin=$(scripts/devdb.sh postgres)
go build -o bin/taskd ./cmd/taskd

dburl() { # replace the database name in the admin URL
	local base=${admin%%\?*} query=
	[[ $admin == *\?* ]] && query="?${admin#*\?}"
	echo "${base%/*}/$1$query"
}
xacts() {
	psql -Atq "$admin" -c "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '$1'"
}

for poll in 100ms 1s 5s; do
	db="taskd_idle_${poll}"
	psql -q "$admin" -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
	DATABASE_URL=$(dburl "$db") TASKD_ADDR=127.0.0.1:0 TASKD_LOG_LEVEL=warn \
		TASKD_FETCH_POLL_INTERVAL=$poll bin/taskd serve --migrate >/dev/null 2>&1 &
	pid=$!
	sleep 15
	a=$(xacts "$db")
	sleep 30
	b=$(xacts "$db")
	kill -TERM "$pid"
	wait "$pid" || true
	psql -q "$admin" -c "DROP DATABASE $db WITH (FORCE)" >/dev/null
	echo "FetchPollInterval $poll: $((b - a)) transactions in 30 s ($(((b - a) / 30)).$(((b - a) * 10 / 30 % 10))/s)"
done
