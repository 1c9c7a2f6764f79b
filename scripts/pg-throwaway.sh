#!/usr/bin/env bash
# A throwaway PostgreSQL server for tests: its own cluster in a folder, on loopback, on a free port.
# Debian's postgresql package provides the binaries (scripts/bootstrap.sh --test installs it); the
# system's own cluster is not used or touched.
#
#   pg-throwaway.sh start DIR     initdb (first time) and start; prints the database URL (no
#                                 password in it); the password is in DIR/password
#   pg-throwaway.sh stop DIR      fast shutdown (clients disconnected, data kept)
#   pg-throwaway.sh kill DIR      immediate shutdown, as if the server crashed (recovery on start)
#   pg-throwaway.sh restart DIR   stop, then start on the same port
#   pg-throwaway.sh url DIR       the URL again
#   pg-throwaway.sh createdb DIR NAME
#                                 a fresh database NAME ([a-z0-9_]) owned by `rind`, on the same
#                                 server (tests take one each); prints its URL
#   pg-throwaway.sh destroy DIR   stop if running and remove DIR
#
# Role `rind` (password authentication over TCP, scram-sha-256) owns database `rind`. As root the
# server runs as the `postgres` user (initdb refuses root); otherwise as the caller.
set -euo pipefail

command=${1:?usage: pg-throwaway.sh start|stop|kill|restart|url|destroy DIR}
dir=${2:?usage: pg-throwaway.sh $command DIR}

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
    echo "pg-throwaway: no PostgreSQL server binaries in /usr/lib/postgresql/*/bin (apt-get install postgresql)" >&2
    exit 3
fi

as_owner() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

url() {
    echo "postgres://rind@127.0.0.1:$(cat "$dir/port")/rind"
}

start() {
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
        as_owner "$bindir/initdb" -D "$dir/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
            --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
            { cat "$dir/initdb.log" >&2; exit 1; }
        free_port >"$dir/port"
        python3 -c 'import secrets; print(secrets.token_urlsafe(18))' >"$dir/password"
        chmod 0600 "$dir/password"
        # Tests restart it on purpose; fsync off keeps them quick (an OS crash is not simulated).
        cat >>"$dir/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $(cat "$dir/port")
unix_socket_directories = '$dir'
fsync = off
full_page_writes = off
max_connections = 200
log_min_messages = warning
EOF
        fresh=1
    fi
    as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null ||
        { tail -20 "$dir/server.log" >&2; exit 1; }
    if [ "${fresh:-0}" = 1 ]; then
        local password
        password=$(cat "$dir/password")
        as_owner "$bindir/psql" -q -h "$dir" -p "$(cat "$dir/port")" -U postgres -d postgres -v ON_ERROR_STOP=1 \
            -c "CREATE ROLE rind LOGIN PASSWORD '$password'" -c "CREATE DATABASE rind OWNER rind" >/dev/null
    fi
    url
}

stop() {
    [ -f "$dir/data/postmaster.pid" ] || return 0
    as_owner "$bindir/pg_ctl" -D "$dir/data" -m "$1" -w -t 60 stop >/dev/null
}

createdb() {
    local name=${1:?usage: pg-throwaway.sh createdb DIR NAME}
    [[ "$name" =~ ^[a-z0-9_]+$ ]] || { echo "pg-throwaway: database names are [a-z0-9_]+, not '$name'" >&2; exit 2; }
    dir=$(cd "$dir" && pwd)
    as_owner "$bindir/psql" -q -h "$dir" -p "$(cat "$dir/port")" -U postgres -d postgres -v ON_ERROR_STOP=1 \
        -c "CREATE DATABASE $name OWNER rind" >/dev/null
    echo "postgres://rind@127.0.0.1:$(cat "$dir/port")/$name"
}

case "$command" in
    start) start ;;
    stop) stop fast ;;
    kill) stop immediate ;;
    restart) stop fast; start ;;
    url) url ;;
    createdb) createdb "${3:-}" ;;
    destroy) stop immediate || true; rm -rf "$dir" ;;
    *) echo "pg-throwaway: unknown command $command" >&2; exit 2 ;;
esac
