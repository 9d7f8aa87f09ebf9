#!/bin/bash
# One cluster node: its etcd member in the background, Patroni in front.
# The container ends when either ends, so Docker's restart policy and the
# tests see a node that is down as down.
set -euo pipefail

# A killed node leaves PostgreSQL's lock files behind (the socket's in the
# container's own layer, the data directory's in its volume). They name the
# old postmaster's PID, which in this fresh container may belong to another
# process, and PostgreSQL would then refuse to start for good. Nothing of
# this node runs yet, so they are stale.
rm -f /var/run/postgresql/.s.PGSQL.*.lock /var/lib/postgresql/data/postmaster.pid

node=$(hostname)
# etcd listens only on the nodes' own network (`dcs`), where each node is
# also known as NODE-dcs: nothing else can reach it to change the cluster.
dcs_address=$(getent hosts "$node-dcs" | awk '{ print $1; exit }')
members=pg1=http://pg1-dcs:2380,pg2=http://pg2-dcs:2380,pg3=http://pg3-dcs:2380

etcd --name "$node" --data-dir /var/lib/postgresql/etcd \
  --listen-peer-urls "http://$dcs_address:2380" --initial-advertise-peer-urls "http://$node-dcs:2380" \
  --listen-client-urls "http://$dcs_address:2379,http://127.0.0.1:2379" --advertise-client-urls "http://$node-dcs:2379" \
  --initial-cluster "$members" --initial-cluster-state new --initial-cluster-token inlet \
  --log-level warn &

export PATRONI_NAME=$node
export PATRONI_RESTAPI_CONNECT_ADDRESS=$node:8008
export PATRONI_POSTGRESQL_CONNECT_ADDRESS=$node:5432
# The passwords, from the secret files (patroni-env.sh).
source /usr/local/bin/patroni-env.sh
patroni /etc/patroni/patroni.yml &

wait -n
echo "node.sh: etcd or Patroni ended; stopping the node" >&2
exit 1
