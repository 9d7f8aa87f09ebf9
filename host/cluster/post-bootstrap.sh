#!/bin/bash
# Run once by Patroni on the first leader, with a superuser connection URL:
# Inlet's role, with the password of its secret file (read by psql itself,
# so it is in no process's arguments), and its database (UTF8, C.UTF-8 so
# that pg_trgm indexes every script). Inlet applies its schema itself.
set -euo pipefail
psql -v ON_ERROR_STOP=1 "$1" <<'SQL'
\set password `head -n 1 /run/secrets/inlet_db_password`
CREATE ROLE inlet LOGIN PASSWORD :'password';
CREATE DATABASE inlet OWNER inlet ENCODING 'UTF8' LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8' TEMPLATE template0;
SQL
