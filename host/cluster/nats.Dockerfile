# The cluster's broker: Debian's nats-server with JetStream, where the
# Inlet hosts forward every message (FORWARD_URL). On the base
# `host/docker/base-image.sh debian` provides (made locally when no
# registry answers). Its store is the `nats` volume.
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nats-server \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o nats -g nats -m 700 /data
USER nats
EXPOSE 4222
ENTRYPOINT ["nats-server", "--jetstream", "--store_dir", "/data", "--port", "4222"]
