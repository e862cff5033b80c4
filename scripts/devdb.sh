#!/usr/bin/env bash
# devdb.sh [DBNAME] prints a usable PostgreSQL URL for database DBNAME
# (default taskd) on stdout; everything else goes to stderr.
#
#   1. If DATABASE_URL is set, it is printed as is.
#   2. Else, if a server answers on 127.0.0.1:$TASKD_PGPORT (default 5432),
#      DBNAME is created there if missing and
#      postgres://postgres@127.0.0.1:PORT/DBNAME?sslmode=disable is printed.
#   3. Else a private cluster is used: PostgreSQL is installed with apt-get if
#      it is missing, a cluster with trust authentication is created in
#      $TASKD_PGDATA (default ./.pgdata in the repository, or a directory
#      under /var/tmp when running as root and the postgres user can't reach
#      the repository), and started on 127.0.0.1:$TASKD_PGPORT, or on 55432
#      if that port is busy. A running private cluster is reused.
#
# TASKD_DEVDB_FORCE_PRIVATE=1 skips step 2. `devdb.sh --stop` stops the
# private cluster.
set -euo pipefail

log() { printf 'devdb: %s\n' "$*" >&2; }
die() {
	log "$*"
	exit 1
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
host=127.0.0.1
port=${TASKD_PGPORT:-5432}
fallback_port=55432
is_root=false
[[ $(id -u) -eq 0 ]] && is_root=true

stop=false
dbname=taskd
case ${1:-} in
--stop) stop=true ;;
"") ;;
*) dbname=$1 ;;
esac
[[ $dbname =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "invalid database name: $dbname"

# pgbin NAME prints the path of PostgreSQL program NAME: the newest under
# /usr/lib/postgresql, else the one on PATH.
pgbin() {
	local dir
	for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n -r); do
		if [[ -x $dir/$1 ]]; then
			echo "$dir/$1"
			return
		fi
	done
	command -v "$1" || true
}

# apt_install PACKAGE... installs Debian packages non-interactively.
apt_install() {
	$is_root || die "PostgreSQL is missing; install it (apt-get install $*) or set DATABASE_URL"
	command -v apt-get >/dev/null || die "PostgreSQL is missing and there is no apt-get; set DATABASE_URL"
	log "installing $* with apt-get"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2
	apt-get install -y -qq --no-install-recommends "$@" >&2
}

# port_open PORT reports whether something accepts TCP connections on PORT.
port_open() {
	(exec 3<>"/dev/tcp/$host/$1") 2>/dev/null
}

# answers PORT reports whether a PostgreSQL server answers on PORT.
answers() {
	local pg_isready
	pg_isready=$(pgbin pg_isready)
	if [[ -n $pg_isready ]]; then
		"$pg_isready" -q -h "$host" -p "$1" -t 3
	else
		port_open "$1"
	fi
}

# ensure_db PORT creates database $dbname on the server on PORT if missing
# and prints its URL.
ensure_db() {
	local psql url exists
	psql=$(pgbin psql)
	if [[ -z $psql ]]; then
		apt_install postgresql-client
		psql=$(pgbin psql)
	fi
	url="postgres://postgres@$host:$1/postgres?sslmode=disable"
	exists=$("$psql" "$url" -XAtqc "SELECT 1 FROM pg_database WHERE datname = '$dbname'") ||
		die "the server on $host:$1 does not let role postgres in without a password; set DATABASE_URL or TASKD_PGPORT"
	if [[ $exists != 1 ]]; then
		log "creating database $dbname on $host:$1"
		"$psql" "$url" -XAtqc "CREATE DATABASE \"$dbname\"" >&2
	fi
	echo "postgres://postgres@$host:$1/$dbname?sslmode=disable"
}

# as_owner CMD... runs CMD as the private cluster's owner: postgres when
# running as root (initdb and pg_ctl refuse root), else the current user.
# It runs in / because postgres may not be allowed into the current
# directory.
as_owner() {
	if $is_root; then
		if command -v runuser >/dev/null; then
			(cd / && runuser -u postgres -- "$@")
		else
			(cd / && su postgres -s /bin/sh -c "$(printf '%q ' "$@")")
		fi
	else
		"$@"
	fi
}

# pgdata prints the private cluster's data directory.
pgdata() {
	if [[ -n ${TASKD_PGDATA:-} ]]; then
		echo "$TASKD_PGDATA"
	elif ! $is_root || ! id postgres >/dev/null 2>&1 || runuser -u postgres -- test -x "$repo" 2>/dev/null; then
		echo "$repo/.pgdata"
	else
		echo "/var/tmp/taskd-pgdata-$(printf '%s' "$repo" | cksum | cut -d' ' -f1)"
	fi
}

# running_port DATA prints the port of the cluster running in DATA, if any.
running_port() {
	local pg_ctl=$1 data=$2
	[[ -f $data/postmaster.pid ]] || return 1
	as_owner "$pg_ctl" status -D "$data" >/dev/null 2>&1 || return 1
	sed -n 4p "$data/postmaster.pid"
}

if $stop; then
	data=$(pgdata)
	pg_ctl=$(pgbin pg_ctl)
	if [[ -n $pg_ctl ]] && running_port "$pg_ctl" "$data" >/dev/null; then
		log "stopping the private cluster in $data"
		as_owner "$pg_ctl" stop -D "$data" -m fast -w >&2
	else
		log "no private cluster running in $data"
	fi
	exit 0
fi

if [[ -n ${DATABASE_URL:-} ]]; then
	echo "$DATABASE_URL"
	exit 0
fi

if [[ ${TASKD_DEVDB_FORCE_PRIVATE:-} != 1 ]] && answers "$port"; then
	ensure_db "$port"
	exit 0
fi

# A private cluster.
if [[ -z $(pgbin initdb) || -z $(pgbin pg_ctl) ]]; then
	# As in the official postgres Docker image: keep the package from
	# creating and starting a cluster of its own on port 5432.
	apt_install postgresql-common
	sed -ri 's/^#?\s*(create_main_cluster)\s*=.*$/\1 = false/' /etc/postgresql-common/createcluster.conf
	apt_install postgresql
fi
initdb=$(pgbin initdb)
pg_ctl=$(pgbin pg_ctl)
[[ -n $initdb && -n $pg_ctl ]] || die "initdb or pg_ctl not found after installing PostgreSQL"

if $is_root && ! id postgres >/dev/null 2>&1; then
	log "creating user postgres"
	useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/sh postgres
fi

data=$(pgdata)
if [[ ! -f $data/PG_VERSION ]]; then
	log "creating a cluster in $data"
	mkdir -p "$data"
	if $is_root; then
		chown postgres: "$data"
	fi
	chmod 700 "$data"
	as_owner "$initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 --locale=C >&2
	# TCP on the loopback interface only, no Unix socket (its default
	# directory may not be writable); the port is given at start.
	cat >>"$data/postgresql.conf" <<-'EOF'

		# Added by taskd's scripts/devdb.sh.
		listen_addresses = '127.0.0.1'
		unix_socket_directories = ''
	EOF
fi

if running=$(running_port "$pg_ctl" "$data"); then
	log "reusing the private cluster in $data on port $running"
	port=$running
else
	if port_open "$port"; then
		log "port $port is busy, using $fallback_port"
		port=$fallback_port
		! port_open "$port" || die "port $port is busy too; set TASKD_PGPORT"
	fi
	log "starting the private cluster in $data on port $port (log: $data/server.log)"
	as_owner "$pg_ctl" start -D "$data" -w -t 60 -l "$data/server.log" -o "-p $port" >&2
fi

ensure_db "$port"
