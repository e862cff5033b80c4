#!/usr/bin/env bash
# run.sh runs the FastAPI example on loopback, for a person to try: taskd
# (with this directory's taskd.yaml), the pull worker (worker.py) and the
# FastAPI app (app.py under uvicorn). Ctrl-C stops all three.
#
#   examples/fastapi/run.sh                 install what is missing, then run
#   examples/fastapi/run.sh --install-only  only install Debian's python3-fastapi,
#                                           python3-uvicorn and python3-httpx
#
# The Python side runs on /usr/bin/python3, which sees Debian's packages (a
# python3 earlier on PATH, such as pyenv's, may not). The packages are
# installed with apt-get when /usr/bin/python3 cannot import them, which
# needs root; a second run installs nothing.
#
# Settings, from the environment:
#   DATABASE_URL            taskd's database (default: scripts/devdb.sh taskd,
#                           as `make run` does)
#   TASKD_ADDR              taskd's address (default 127.0.0.1:8080)
#   EXAMPLE_APP_PORT        the FastAPI app's port on 127.0.0.1 (default 8000)
#   EXAMPLE_WEBHOOK_SECRET  the push kind's signing secret, whsec_<base64>
#                           (default: a new random one)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
python=/usr/bin/python3
packages=(python3-fastapi python3-uvicorn python3-httpx)

log() { printf 'run.sh: %s\n' "$*" >&2; }
die() {
	log "$*"
	exit 1
}

have_packages() {
	[[ -x $python ]] && "$python" -c 'import fastapi, uvicorn, httpx' 2>/dev/null
}

# install installs the Debian packages unless /usr/bin/python3 already
# imports them. It is idempotent and never asks a question.
install() {
	if have_packages; then
		return 0
	fi
	[[ $(id -u) -eq 0 ]] || die "$python cannot import fastapi, uvicorn and httpx; run this as root to install ${packages[*]} with apt-get, or install them yourself"
	command -v apt-get >/dev/null || die "$python cannot import fastapi, uvicorn and httpx, and there is no apt-get to install ${packages[*]} with"
	export DEBIAN_FRONTEND=noninteractive
	# Wait for another apt-get (or dpkg) rather than fail on its lock.
	local apt=(apt-get -o DPkg::Lock::Timeout=300 -y -qq)
	local pkg
	for pkg in "${packages[@]}"; do
		if ! apt-cache show "$pkg" >/dev/null 2>&1; then
			log "package lists lack $pkg: running apt-get update"
			"${apt[@]}" update
			break
		fi
	done
	log "installing ${packages[*]}"
	"${apt[@]}" install --no-install-recommends "${packages[@]}" >&2
	have_packages || die "${packages[*]} are installed, but $python still cannot import fastapi, uvicorn and httpx"
}

case ${1:-} in
--install-only)
	install
	exit 0
	;;
"") ;;
*) die "unknown argument $1; usage: run.sh [--install-only]" ;;
esac

install

export PYTHONPATH="$repo/clients/python${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
export TASKD_ADDR=${TASKD_ADDR:-127.0.0.1:8080}
export TASKD_URL="http://$TASKD_ADDR"
export EXAMPLE_APP_PORT=${EXAMPLE_APP_PORT:-8000}
if [[ -z ${EXAMPLE_WEBHOOK_SECRET:-} ]]; then
	EXAMPLE_WEBHOOK_SECRET="whsec_$(head -c 32 /dev/urandom | base64)"
fi
export EXAMPLE_WEBHOOK_SECRET
DATABASE_URL=${DATABASE_URL:-$("$repo/scripts/devdb.sh" taskd)}
export DATABASE_URL

log "building taskd"
(cd "$repo" && go build -o bin/taskd ./cmd/taskd)

pids=()
stop() {
	local pid
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	wait
}
trap stop EXIT
trap 'exit 130' INT TERM

"$repo/bin/taskd" serve --migrate --config "$here/taskd.yaml" &
pids+=($!)

# Wait for taskd to be ready before the worker's first claim.
ready=false
for _ in $(seq 300); do
	if "$python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/readyz", timeout=1)' "$TASKD_URL" 2>/dev/null; then
		ready=true
		break
	fi
	kill -0 "${pids[0]}" 2>/dev/null || die "taskd exited; see its output above"
	sleep 0.1
done
$ready || die "taskd was not ready on $TASKD_URL/readyz within 30 s"

(cd "$here" && exec "$python" worker.py) &
pids+=($!)
(cd "$here" && exec "$python" -m uvicorn app:app --host 127.0.0.1 --port "$EXAMPLE_APP_PORT") &
pids+=($!)

log "taskd (pid ${pids[0]}) on $TASKD_URL, the worker (pid ${pids[1]}), the FastAPI app on http://127.0.0.1:$EXAMPLE_APP_PORT (docs at /docs); Ctrl-C stops them"
log "try: curl -s --json '[{\"value\": 1}, {\"value\": 2}, {\"value\": 3}]' localhost:$EXAMPLE_APP_PORT/process-multiple"
# Run until Ctrl-C or the app exits, not when taskd or the worker does:
# killing them is part of the demonstration, and meanwhile the app answers
# 503 (no taskd) or its tasks wait (no worker).
wait "${pids[2]}"
