#!/usr/bin/env bash
# The builder base image the Dockerfile names (RUST_IMAGE), wherever Docker
# runs: already present, else pulled, else made here when no registry can be
# reached: a Debian bookworm root from Debian's packages (debootstrap) with
# the C toolchain, plus this machine's Rust toolchain and its wasm32-wasip2
# target, imported under the public image's name and tag. The runtime stage
# is FROM scratch and needs no base image. `make up` runs this first.
#
# The Debian mirror is the one this machine's apt is configured with
# (DEBIAN_MIRROR overrides it). Idempotent.
set -euo pipefail

RUST_IMAGE=${RUST_IMAGE:-rust:1.95-slim-bookworm}

if docker image inspect "$RUST_IMAGE" >/dev/null 2>&1; then
  exit 0
fi
if docker pull "$RUST_IMAGE" >/dev/null 2>&1; then
  echo "base-image: pulled $RUST_IMAGE"
  exit 0
fi
echo "base-image: $RUST_IMAGE cannot be pulled; making it from Debian packages"

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
  echo "base-image: no Debian mirror in /etc/apt; set DEBIAN_MIRROR, or make $RUST_IMAGE available to Docker" >&2
  exit 1
fi

command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap; }
toolchain=$(rustc --print sysroot)
[ -d "$toolchain/lib/rustlib/wasm32-wasip2" ] || rustup target add wasm32-wasip2

root=$(mktemp -d /tmp/inlet-rust-root.XXXXXX)
trap 'rm -rf "$root"' EXIT

echo "base-image: debootstrap bookworm from $MIRROR into $root"
debootstrap --variant=minbase --include=gcc,libc6-dev,make,ca-certificates \
  bookworm "$root" "$MIRROR" >/dev/null
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
# Trust what this machine trusts: its egress to the package registries may
# present certificates signed by a local authority.
if [ -d /usr/local/share/ca-certificates ]; then
  cp -r /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
fi
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"

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

echo "base-image: importing $RUST_IMAGE"
tar -C "$root" -c . | docker import \
  --change 'ENV RUSTUP_HOME=/usr/local/rustup' \
  --change 'ENV CARGO_HOME=/usr/local/cargo' \
  --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["bash"]' \
  - "$RUST_IMAGE" >/dev/null
docker image ls "$RUST_IMAGE"
