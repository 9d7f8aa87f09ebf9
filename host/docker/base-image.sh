#!/usr/bin/env bash
# A base image the Dockerfiles name, wherever Docker runs: already present,
# else pulled, else made here when no registry can be reached, from Debian
# bookworm's packages (debootstrap), imported under the public image's name:
#
#   base-image.sh [rust]   the builder base of ./Dockerfile (RUST_IMAGE): the C
#                          toolchain plus this machine's Rust toolchain and its
#                          wasm32-wasip2 target. `make up` runs this first; the
#                          runtime stage is FROM scratch and needs no base.
#   base-image.sh debian   plain Debian (DEBIAN_IMAGE), the base of the
#                          cluster's images under host/cluster/.
#
# The Debian mirror is the one this machine's apt is configured with
# (DEBIAN_MIRROR overrides it). Idempotent.
set -euo pipefail

KIND=${1:-rust}
case "$KIND" in
  rust) IMAGE=${RUST_IMAGE:-rust:1.95-slim-bookworm} INCLUDE=gcc,libc6-dev,make,ca-certificates ;;
  debian) IMAGE=${DEBIAN_IMAGE:-debian:bookworm-slim} INCLUDE=ca-certificates ;;
  *) echo "base-image: unknown kind $KIND (rust or debian)" >&2; exit 2 ;;
esac

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  exit 0
fi
if docker pull "$IMAGE" >/dev/null 2>&1; then
  echo "base-image: pulled $IMAGE"
  exit 0
fi
echo "base-image: $IMAGE cannot be pulled; making it from Debian packages"

# The first Debian archive in apt's sources (deb822 `URIs:` or one-line `deb`).
apt_mirror() {
  local file
  for file in /etc/apt/sources.list.d/*.sources; do
    [ -f "$file" ] || continue
    awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }' "$file"
  done
  if [ -f /etc/apt/sources.list ]; then
    awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\/.*\/debian\/?$/) { print $i; exit } }' /etc/apt/sources.list
  fi
}
MIRROR=${DEBIAN_MIRROR:-$(apt_mirror | head -n1)}
if [ -z "$MIRROR" ]; then
  echo "base-image: no Debian mirror in /etc/apt; set DEBIAN_MIRROR, or make $IMAGE available to Docker" >&2
  exit 1
fi

command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap; }

root=$(mktemp -d /tmp/inlet-base-root.XXXXXX)
trap 'rm -rf "$root"' EXIT

echo "base-image: debootstrap bookworm from $MIRROR into $root"
debootstrap --variant=minbase --include="$INCLUDE" bookworm "$root" "$MIRROR" >/dev/null
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
# Trust what this machine trusts: its egress to the package registries may
# present certificates signed by a local authority.
if [ -d /usr/local/share/ca-certificates ]; then
  cp -r /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
fi
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"

if [ "$KIND" = debian ]; then
  echo "base-image: importing $IMAGE"
  tar -C "$root" -c . | docker import --change 'CMD ["bash"]' - "$IMAGE" >/dev/null
  docker image ls "$IMAGE"
  exit 0
fi

toolchain=$(rustc --print sysroot)
[ -d "$toolchain/lib/rustlib/wasm32-wasip2" ] || rustup target add wasm32-wasip2

# Laid out as the official image: RUSTUP_HOME=/usr/local/rustup,
# CARGO_HOME=/usr/local/cargo with rustup's proxies on PATH.
version=$(rustc --version | cut -d' ' -f2)
name="$version-x86_64-unknown-linux-gnu"
mkdir -p "$root/usr/local/rustup/toolchains/$name" "$root/usr/local/cargo/bin"
tar -C "$toolchain" --exclude=./share/doc --exclude=./lib/rustlib/src -cf - . \
  | tar -C "$root/usr/local/rustup/toolchains/$name" -xf -
printf 'version = "12"\ndefault_toolchain = "%s"\nprofile = "minimal"\n' "$name" > "$root/usr/local/rustup/settings.toml"
cp "$(command -v rustup)" "$root/usr/local/cargo/bin/rustup"
for tool in cargo rustc rustdoc cargo-clippy clippy-driver rustfmt cargo-fmt; do
  ln -sf rustup "$root/usr/local/cargo/bin/$tool"
done

echo "base-image: importing $IMAGE"
tar -C "$root" -c . | docker import \
  --change 'ENV RUSTUP_HOME=/usr/local/rustup' \
  --change 'ENV CARGO_HOME=/usr/local/cargo' \
  --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["bash"]' \
  - "$IMAGE" >/dev/null
docker image ls "$IMAGE"
