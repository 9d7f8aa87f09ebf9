# A PostgreSQL cluster node: PostgreSQL 15 run by Patroni, beside one member
# of the cluster's etcd (node.sh starts both). Debian's packages on the
# base `host/docker/base-image.sh debian` provides (made locally when no
# registry answers).
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_IMAGE}

# Patroni runs initdb itself: Debian's default cluster is not created.
RUN mkdir -p /etc/postgresql-common/createcluster.d \
 && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/inlet.conf \
 && apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      postgresql-15 patroni etcd-server \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o postgres -g postgres -m 700 /var/lib/postgresql

COPY host/cluster/patroni.yml /etc/patroni/patroni.yml
COPY host/cluster/node.sh host/cluster/post-bootstrap.sh host/cluster/patroni-env.sh host/cluster/patronictl /usr/local/bin/

USER postgres
VOLUME ["/var/lib/postgresql"]
EXPOSE 5432 8008 2379 2380
ENTRYPOINT ["/usr/local/bin/node.sh"]
