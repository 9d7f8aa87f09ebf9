# Inlet: the wasmtime host and its guest component, in a runtime image that
# holds only the binary, the guest and the shared libraries they load.
#
# The builder base is named by an ARG; host/docker/base-image.sh (run by
# `make up`) pulls it, or makes it locally where no registry can be reached.
ARG RUST_IMAGE=rust:1.95-slim-bookworm

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
RUN rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

# Dependencies first, against stub sources: editing the code later reuses
# this layer instead of fetching and compiling every crate again.
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY host/Cargo.toml host/
COPY guest/Cargo.toml guest/
COPY guest/signature/Cargo.toml guest/signature/
COPY tests/Cargo.toml tests/
COPY tests/harness/Cargo.toml tests/harness/
COPY tests/bench/Cargo.toml tests/bench/
COPY tests/pgserver/Cargo.toml tests/pgserver/
RUN mkdir -p host/src guest/src guest/signature/src tests/src tests/harness/src tests/bench/src tests/pgserver/src \
 && echo 'fn main() {}' > host/src/main.rs \
 && echo 'fn main() {}' > tests/bench/src/main.rs \
 && touch guest/src/lib.rs guest/signature/src/lib.rs tests/src/lib.rs tests/harness/src/lib.rs tests/pgserver/src/lib.rs \
 && cargo build --release --locked -p inlet \
 && cargo build --release --locked -p inlet-guest --target wasm32-wasip2 \
 && rm -rf host/src guest/src guest/signature/src tests/src tests/harness/src tests/bench/src tests/pgserver/src

COPY wit wit
COPY host host
COPY guest guest
COPY tests tests
# COPY keeps the context's modification times, which can predate the stub
# build; touching the crate roots makes cargo rebuild them.
RUN touch host/src/main.rs host/src/lib.rs guest/src/lib.rs guest/signature/src/lib.rs \
 && cargo build --release --locked -p inlet \
 && cargo build --release --locked -p inlet-guest --target wasm32-wasip2

# The runtime root: the stripped binary, the guest, the dynamic loader and
# the libraries the binary links; apart, /data for the database.
RUN mkdir -p /rootfs /datadir/data \
 && cp target/release/inlet /rootfs/inlet \
 && strip /rootfs/inlet \
 && cp target/wasm32-wasip2/release/inlet_guest.wasm /rootfs/guest.wasm \
 && ldd target/release/inlet | grep -o '/[^ ]*' | xargs -I{} cp --parents -L {} /rootfs

FROM scratch
COPY --from=builder /rootfs /
COPY --from=builder --chown=65532:65532 /datadir /
# Not root: an unprivileged uid that owns only /data.
USER 65532:65532
ENV DATABASE_URL=sqlite:////data/app.db \
    GUEST_COMPONENT=/guest.wasm \
    PORT=8000
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=5s --timeout=4s --start-period=5s --retries=3 CMD ["/inlet", "probe"]
ENTRYPOINT ["/inlet"]
CMD ["serve"]
