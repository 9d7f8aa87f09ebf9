# Patroni's passwords and REST API credentials from the secret files compose
# mounts (host/cluster/secrets.sh makes them), as the environment variables
# Patroni and patronictl read; sourced, under `set -e`, by node.sh and the
# patronictl wrapper: a missing or empty file stops them.
secret() {
  local value
  value=$(head -n 1 "/run/secrets/$1")
  [ -n "$value" ] || { echo "patroni-env.sh: /run/secrets/$1 is empty" >&2; return 1; }
  printf '%s' "$value"
}
PATRONI_SUPERUSER_PASSWORD=$(secret postgres_password)
PATRONI_REPLICATION_PASSWORD=$(secret replication_password)
PATRONI_REWIND_PASSWORD=$(secret rewind_password)
PATRONI_RESTAPI_PASSWORD=$(secret patroni_api_password)
PATRONI_RESTAPI_USERNAME=patroni
export PATRONI_SUPERUSER_PASSWORD PATRONI_REPLICATION_PASSWORD PATRONI_REWIND_PASSWORD \
  PATRONI_RESTAPI_PASSWORD PATRONI_RESTAPI_USERNAME
