#!/bin/bash
# The cluster's secrets, one file each in target/cluster/secrets/ (run by
# `make cluster-up`; docker-compose.yml mounts them at /run/secrets/NAME).
# Each password is generated once, at the first cluster-up, and then kept:
# the database volumes remember it, so a password missing while the volumes
# exist (target/ cleaned) stops here rather than being replaced. The webhook
# secret is WEBHOOK_SECRET when that is set (written over the file in place,
# so the running hosts re-read it), else generated once. Nothing secret is in
# the compose file or in a container's environment.
set -euo pipefail

dir=target/cluster/secrets
passwords=(inlet_db_password postgres_password replication_password rewind_password patroni_api_password)
volume=inlet-cluster_pg1

# Compose bind-mounts the files as they are, and each container reads them
# as its own user: the files are world-readable, their directory is not.
umask 077
mkdir -p "$dir"
chmod 700 "$dir"

# Writes over the file's contents rather than replacing it: a bind mount
# keeps the inode it was given.
store() {
  printf '%s\n' "$2" > "$dir/$1"
  chmod 644 "$dir/$1"
}

generated() {
  od -An -N24 -tx1 /dev/urandom | tr -d ' \n'
}

for name in "${passwords[@]}"; do
  [ -s "$dir/$name" ] && continue
  if docker volume inspect "$volume" >/dev/null 2>&1; then
    echo "secrets.sh: $dir/$name is missing but the cluster's database volumes exist, with the old" \
      "passwords; restore the file, or remove the volumes (make cluster-down CLUSTER_DOWN_ARGS=-v)" >&2
    exit 1
  fi
  store "$name" "$(generated)"
done
# The operator's admin API key, and the key file the hosts read: it holds
# the key's SHA-256 only. Kept once made, so lines an operator adds stay.
if [ ! -s "$dir/api_key" ]; then
  # As `inlet key new` makes them: 32 random bytes, base64url.
  store api_key "inlet_$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
  echo "secrets.sh: generated an admin API key (operator), in $dir/api_key" >&2
fi
if [ ! -s "$dir/api_keys" ]; then
  digest=$(head -n1 "$dir/api_key" | tr -d '\n' | sha256sum | cut -d' ' -f1)
  store api_keys "operator admin sha256:$digest"
fi
if [ -n "${WEBHOOK_SECRET:-}" ]; then
  store webhook_secret "$WEBHOOK_SECRET"
elif [ ! -s "$dir/webhook_secret" ]; then
  store webhook_secret "$(generated)"
  echo "secrets.sh: generated the webhook secret, in $dir/webhook_secret" >&2
fi
