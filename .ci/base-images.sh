#!/usr/bin/env bash
# Makes, locally, the base image the Dockerfile names, because no container
# registry can be reached here: a Debian bookworm root from Debian's packages
# (debootstrap) with the C toolchain, plus this machine's Rust toolchain and
# its wasm32-wasip2 target, imported under the public image's name and tag.
# The runtime stage is FROM scratch and needs no base image.
#
# Idempotent: does nothing when the image already exists.
set -euo pipefail

RUST_IMAGE=${RUST_IMAGE:-rust:1.95-slim-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if docker image inspect "$RUST_IMAGE" >/dev/null 2>&1; then
  echo "base-images: $RUST_IMAGE already present"
  exit 0
fi

command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap; }
toolchain=$(rustc --print sysroot)
[ -d "$toolchain/lib/rustlib/wasm32-wasip2" ] || rustup target add wasm32-wasip2

root=$(mktemp -d /tmp/inlet-rust-root.XXXXXX)
trap 'rm -rf "$root"' EXIT

echo "base-images: debootstrap bookworm into $root"
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

echo "base-images: importing $RUST_IMAGE"
tar -C "$root" -c . | docker import \
  --change 'ENV RUSTUP_HOME=/usr/local/rustup' \
  --change 'ENV CARGO_HOME=/usr/local/cargo' \
  --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["bash"]' \
  - "$RUST_IMAGE" >/dev/null
docker image ls "$RUST_IMAGE"
