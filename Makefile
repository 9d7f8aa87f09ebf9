# Inlet: a wasmtime host (host/) serving a wasm32-wasip2 guest (guest/).
CARGO ?= cargo
GUEST_WASM := target/wasm32-wasip2/release/inlet_guest.wasm

# Random inputs each fuzz target tries during `make test` (its corpus is replayed too).
export BOLERO_RANDOM_ITERATIONS ?= 200000

# Development defaults for `make run`; override from the environment.
WEBHOOK_SECRET ?= devsecret
DATABASE_URL ?= sqlite:///./app.db
LOG_LEVEL ?= INFO
PORT ?= 8000

.PHONY: build guest host fixtures wasm-target run test test-deps test-api test-guest lint up down logs test-docker bench bench-smoke baseline reference \
	cluster-up cluster-down test-cluster bench-cluster

# `docker compose` (v2) where installed, else the v1 `docker-compose`.
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)

## build: the host (target/release/inlet) and the guest component
build: guest host

wasm-target:
	@rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

guest: wasm-target
	$(CARGO) build --release --locked -p inlet-guest --target wasm32-wasip2

# The test guests, each its own workspace: the misbehaving one the
# sandbox-limit tests run, and one built against the previous WIT.
FIXTURES := tests/fixtures/misbehaving-guest tests/fixtures/old-wit-guest

fixtures: wasm-target
	for fixture in $(FIXTURES); do \
		$(CARGO) build --release --locked --manifest-path $$fixture/Cargo.toml \
			--target wasm32-wasip2 --target-dir target/fixtures || exit 1; \
	done

host:
	$(CARGO) build --release --locked -p inlet

## run: serve natively on :$(PORT) with development defaults
run: build
	WEBHOOK_SECRET='$(WEBHOOK_SECRET)' DATABASE_URL='$(DATABASE_URL)' LOG_LEVEL='$(LOG_LEVEL)' PORT='$(PORT)' \
		GUEST_COMPONENT=$(GUEST_WASM) ./target/release/inlet serve

## test: every test: unit tests (host, guest logic, signature) and end-to-end
## tests against the real binary and the real guest, then the end-to-end suites
## that speak only HTTP once more with PostgreSQL as the database (throwaway
## servers from Debian's postgresql-15, installed first when missing: tests/deps.sh).
## Reuses the release build. The tests that need root (they mount) are ignored
## unless run as root.
TEST_ARGS ?= $(if $(filter 0,$(shell id -u)),--include-ignored)
POSTGRES_SUITES := evaluator webhook listing stats whatsapp signatures api_keys lifecycle feed forwarding
test: test-deps
	$(MAKE) build fixtures
	$(CARGO) test --release --locked --workspace -- $(TEST_ARGS)
	INLET_E2E_BACKEND=postgres $(CARGO) test --release --locked -p inlet-e2e \
		$(addprefix --test ,$(POSTGRES_SUITES)) -- $(TEST_ARGS)

test-deps:
	bash tests/deps.sh

## test-api: the contract checks that need more than Rust: the /docs page in headless
## Chromium lists every operation, and schemathesis (pinned: tests/api/requirements.txt)
## runs from /openapi.json with every check on. Needs python3-venv and chromium.
API_VENV := target/api-venv
test-api: build $(API_VENV)/installed
	$(API_VENV)/bin/python tests/api/run.py

$(API_VENV)/installed: tests/api/requirements.txt
	python3 -m venv $(API_VENV)
	$(API_VENV)/bin/pip install -q -r tests/api/requirements.txt
	touch $@

## test-guest: only the guest-in-isolation tests (mock host imports, no server)
test-guest: guest fixtures
	$(CARGO) test --release --locked -p inlet-harness

## reference: the native server `make bench` measures ingest against (read-only source
## beside the project; skipped with a note where it is absent)
REFERENCE_DIR ?= ../shared/reference/native-ingest
reference:
	@if [ -f $(REFERENCE_DIR)/Cargo.toml ]; then \
		$(CARGO) build --release --locked --manifest-path $(REFERENCE_DIR)/Cargo.toml --target-dir target/reference; \
	else echo "no native reference at $(REFERENCE_DIR): make bench leaves it out of its rounds"; fi

## bench: load and timing benchmarks against the real binary and guest (about 19 minutes,
## plus 1 to seed the 1M-row database the first time); prints a table and writes
## target/bench/results.json. BENCH_ARGS passes options (`--help` lists them).
BENCH_ARGS ?=
bench: test-deps build fixtures reference
	$(CARGO) run --release --locked -p inlet-bench -- $(BENCH_ARGS)

## baseline: an earlier commit (REV) built into target/baseline/ (its own target
## directory: a full release build), for this build's ingest as a share of it:
## make bench BENCH_ARGS='--phases rounds --baseline target/baseline'
REV ?= HEAD
baseline: wasm-target
	rm -rf target/baseline target/baseline-src && git worktree prune
	git worktree add --detach target/baseline-src $(REV)
	cd target/baseline-src && $(CARGO) build --release --locked -p inlet --target-dir ../baseline-build \
		&& $(CARGO) build --release --locked -p inlet-guest --target wasm32-wasip2 --target-dir ../baseline-build; \
		built=$$?; cd ../.. && git worktree remove --force target/baseline-src; test $$built = 0
	mkdir -p target/baseline
	cp target/baseline-build/release/inlet target/baseline-build/wasm32-wasip2/release/inlet_guest.wasm target/baseline/

## bench-smoke: the same benchmark, tiny and quick, to keep it working (CI runs it);
## this build stands in for a baseline
bench-smoke: test-deps build fixtures reference
	mkdir -p target/bench/self
	ln -sf ../../release/inlet ../../wasm32-wasip2/release/inlet_guest.wasm target/bench/self/
	$(CARGO) run --release --locked -p inlet-bench -- --seconds 1 --rows 20000 --repeats 1 \
		--ratio-rounds 1 --companion-rounds 1 --baseline target/bench/self --out target/bench/smoke.json

## lint: formatting and clippy on both targets
lint: wasm-target
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --locked --workspace --all-targets -- -D warnings
	$(CARGO) clippy --release --locked -p inlet-guest --target wasm32-wasip2 -- -D warnings
	for fixture in $(FIXTURES); do \
		$(CARGO) fmt --manifest-path $$fixture/Cargo.toml -- --check && \
		$(CARGO) clippy --release --locked --manifest-path $$fixture/Cargo.toml \
			--target wasm32-wasip2 --target-dir target/fixtures -- -D warnings || exit 1; \
	done

## up: build the image and start the `api` service on http://localhost:8000
## (the builder's base image is pulled, or made locally where no registry answers)
up:
	bash host/docker/base-image.sh
	$(COMPOSE) up -d --build

## down: stop it and remove its volume (the database)
down:
	$(COMPOSE) down -v

## cluster-up: Inlet highly available (the compose `cluster` profile): lb on
## http://localhost:8000, inlet1..3 on a Patroni PostgreSQL cluster pg1..3,
## forwarding to a JetStream broker (nats, on 127.0.0.1:4222). Every
## image is made here (Debian packages on a debootstrap base). One or the other
## with `make up`. The hosts serve target/cluster/guest/inlet_guest.wasm: replace
## that file to swap the guest of every host. Its passwords are generated into
## target/cluster/secrets/ the first time; the webhook secret is WEBHOOK_SECRET if set.
CLUSTER_SERVICES := lb inlet1 inlet2 inlet3 nats pg1 pg2 pg3
# One project name wherever the checkout lives, so that its containers are found.
CLUSTER_COMPOSE := $(COMPOSE) --project-name inlet-cluster --profile cluster
cluster-up: guest
	bash host/docker/base-image.sh
	bash host/docker/base-image.sh debian
	bash host/cluster/secrets.sh
	mkdir -p target/cluster/guest
	cp $(GUEST_WASM) target/cluster/guest/.inlet_guest.wasm.new
	mv target/cluster/guest/.inlet_guest.wasm.new target/cluster/guest/inlet_guest.wasm
	$(COMPOSE) build api
	$(CLUSTER_COMPOSE) up -d --build $(CLUSTER_SERVICES)

## cluster-down: stop the cluster and remove its containers; its volumes (the
## database) stay for the next cluster-up (`make cluster-down CLUSTER_DOWN_ARGS=-v` removes them)
cluster-down:
	$(CLUSTER_COMPOSE) down $(CLUSTER_DOWN_ARGS)

## test-cluster: the cluster under faults, one at a time under a steady signed load
## through lb (tests/src/bin/cluster): duplicates sent to different hosts, an Inlet
## host killed, the database leader killed, a planned switchover, a host drained and
## recreated, a host cut off the database network, the guest swapped, the forwarding
## host killed, the whole cluster down and up again with its volumes. Every
## acknowledged message stored once and whole (and forwarded), every reply 200 or
## 503 + Retry-After.
## A few minutes; starts from empty volumes, prints the containers' logs on a failure,
## and leaves the cluster down with its volumes removed.
test-cluster: export CLUSTER_COMPOSE := $(CLUSTER_COMPOSE)
test-cluster:
	$(MAKE) cluster-down CLUSTER_DOWN_ARGS=-v
	$(MAKE) cluster-up && $(CARGO) run --release --locked -p inlet-e2e --bin cluster; status=$$?; \
		[ $$status = 0 ] || $(CLUSTER_COMPOSE) logs --tail 100; \
		$(MAKE) cluster-down CLUSTER_DOWN_ARGS=-v; exit $$status

## bench-cluster: ingest through lb at 32 connections with 1, 2 and 3 Inlet hosts
## (the others held out of rotation), in alternating rounds, with each request's CPU
## time by part (lb, hosts, PostgreSQL leader and standbys, load generator). Brings the
## cluster up first (requests signed with its webhook secret) and leaves it running.
## BENCH_ARGS passes options, as for `make bench`; the results go to $(CLUSTER_BENCH_OUT).
CLUSTER_BENCH_OUT ?= target/bench/cluster.json
bench-cluster: export CLUSTER_COMPOSE := $(CLUSTER_COMPOSE)
bench-cluster: cluster-up
	$(CARGO) run --release --locked -p inlet-bench -- --phases cluster --out $(CLUSTER_BENCH_OUT) $(BENCH_ARGS)

## logs: follow the service's JSON logs
logs:
	$(COMPOSE) logs -f api

## test-docker: the SPEC evaluator's steps against `make up` (needs Docker)
test-docker:
	bash .ci/docker-e2e.sh
