#!/bin/bash
# One cluster node: its etcd member in the background, Patroni in front.
# The container ends when either ends, so Docker's restart policy and the
# tests see a node that is down as down.
set -euo pipefail

node=$(hostname)
members=pg1=http://pg1:2380,pg2=http://pg2:2380,pg3=http://pg3:2380

etcd --name "$node" --data-dir /var/lib/postgresql/etcd \
  --listen-peer-urls http://0.0.0.0:2380 --initial-advertise-peer-urls "http://$node:2380" \
  --listen-client-urls http://0.0.0.0:2379 --advertise-client-urls "http://$node:2379" \
  --initial-cluster "$members" --initial-cluster-state new --initial-cluster-token inlet \
  --log-level warn &

export PATRONI_NAME=$node
export PATRONI_RESTAPI_CONNECT_ADDRESS=$node:8008
export PATRONI_POSTGRESQL_CONNECT_ADDRESS=$node:5432
patroni /etc/patroni/patroni.yml &

wait -n
echo "node.sh: etcd or Patroni ended; stopping the node" >&2
exit 1
