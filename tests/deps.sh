#!/usr/bin/env bash
# What `make test` and `make bench` need beyond Rust and its wasm target, installed when
# missing: Debian's postgresql-15, whose binaries the PostgreSQL suites start
# their own servers from (PG_BIN names another bin/ folder), and nats-server,
# the JetStream broker the forwarding tests start (NATS_SERVER names another).
# As root they are installed (default servers stopped: the tests start their
# own); otherwise this stops before anything is built, with the one command to run.
set -euo pipefail

missing=()
if [ -n "${PG_BIN:-}" ]; then
  if [ ! -x "$PG_BIN/postgres" ]; then
    echo "tests/deps.sh: PG_BIN=$PG_BIN holds no postgres; point it at PostgreSQL 15's bin/ folder" >&2
    exit 1
  fi
else
  [ -x /usr/lib/postgresql/15/bin/postgres ] || missing+=(postgresql-15)
fi
[ -x "${NATS_SERVER:-/usr/sbin/nats-server}" ] || missing+=(nats-server)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "the tests and the bench need ${missing[*]}: run \`sudo apt-get install -y ${missing[*]}\` (or set PG_BIN), then make again" >&2
  exit 1
fi
echo "tests/deps.sh: installing ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
pg_ctlcluster 15 main stop 2>/dev/null || true
systemctl stop nats-server 2>/dev/null || true
