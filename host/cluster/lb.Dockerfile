# The cluster's front: HAProxy spreads HTTP over the Inlet hosts and sends
# database connections to the Patroni leader. Debian's package on the
# base `host/docker/base-image.sh debian` provides (made locally when no
# registry answers).
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy socat \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o haproxy -g haproxy -m 700 /run/haproxy
COPY host/cluster/haproxy.cfg /etc/haproxy/haproxy.cfg
COPY host/cluster/unavailable.http /etc/haproxy/unavailable.http
USER haproxy
EXPOSE 8000 5432
ENTRYPOINT ["haproxy", "-W", "-db", "-f", "/etc/haproxy/haproxy.cfg"]
