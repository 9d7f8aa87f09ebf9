#!/usr/bin/env bash
# What `make test` needs beyond Rust and its wasm target, installed when
# missing: Debian's postgresql-15, whose binaries the PostgreSQL suites start
# their own servers from (PG_BIN names another bin/ folder). As root it is
# installed (its default cluster stopped: the tests do not use it); otherwise
# this stops before anything is built, with the one command to run.
set -euo pipefail

if [ -n "${PG_BIN:-}" ]; then
  [ -x "$PG_BIN/postgres" ] && exit 0
  echo "make test: PG_BIN=$PG_BIN holds no postgres; point it at PostgreSQL 15's bin/ folder" >&2
  exit 1
fi
missing=()
[ -x /usr/lib/postgresql/15/bin/postgres ] || missing+=(postgresql-15)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "make test needs ${missing[*]}: run \`sudo apt-get install -y ${missing[*]}\` (or set PG_BIN), then make test again" >&2
  exit 1
fi
echo "tests/deps.sh: installing ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
pg_ctlcluster 15 main stop 2>/dev/null || true
