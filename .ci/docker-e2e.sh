#!/usr/bin/env bash
# The SPEC.md evaluator's steps, literally, against `make up`; then the
# deployment's promises: non-root, read-only sandbox, database in the volume,
# surviving a restart, and a guest hot swap under load from a mounted directory.
# Ends with `make down`. Needs a Docker engine.
set -uo pipefail
cd "$(dirname "$0")/.."

COMPOSE=$(docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
passed=0
failed=0
check() {
  local name=$1
  shift
  if "$@" >/dev/null 2>&1; then
    passed=$((passed + 1))
    echo "ok   $name"
  else
    failed=$((failed + 1))
    echo "FAIL $name"
  fi
}
http_status() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
sign() { printf '%s' "$1" | openssl dgst -sha256 -hmac "$WEBHOOK_SECRET" | sed 's/^.* //'; }
post() { curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -H "X-Signature: $2" -d "$1" localhost:8000/webhook; }
json_check() { curl -s "localhost:8000$1" | jq -e "$2"; }
wait_ready() {
  for _ in $(seq 1 60); do
    curl -sf localhost:8000/health/ready >/dev/null 2>&1 && return 0
    sleep 1
  done
  return 1
}

# 1. As the evaluator does it.
export WEBHOOK_SECRET=testsecret DATABASE_URL=sqlite:///data/app.db
trap 'make down >/dev/null 2>&1' EXIT
make up || { echo "make up failed"; exit 1; }
sleep 10

# 2. Probes.
check "GET /health/live" curl -sf localhost:8000/health/live
check "GET /health/ready" curl -sf localhost:8000/health/ready

# 3. Signatures and idempotency.
BODY='{"message_id":"m1","from":"+919876543210","to":"+14155550100","ts":"2025-01-15T10:00:00Z","text":"Hello"}'
check "wrong signature is 401" test "$(post "$BODY" 123)" = 401
check "right signature is 200" test "$(post "$BODY" "$(sign "$BODY")")" = 200
check "same again is 200" test "$(post "$BODY" "$(sign "$BODY")")" = 200
check "still one row" json_check /messages '.total == 1'

# 4. More messages.
for body in \
  '{"message_id":"m2","from":"+919876543210","to":"+14155550100","ts":"2025-01-15T09:00:00Z","text":"Earlier hello"}' \
  '{"message_id":"m3","from":"+14155550123","to":"+14155550100","ts":"2025-01-15T11:00:00Z","text":"Bye"}' \
  '{"message_id":"m4","from":"+447700900123","to":"+14155550100","ts":"2025-01-14T08:00:00Z"}'; do
  check "deliver $(jq -r .message_id <<<"$body")" test "$(post "$body" "$(sign "$body")")" = 200
done

# 5. Listings.
check "list all" json_check /messages '.total == 4 and .limit == 50 and .offset == 0 and ([.data[].message_id] == ["m4","m2","m1","m3"])'
check "limit=2&offset=0" json_check '/messages?limit=2&offset=0' '(.data | length) == 2 and .limit == 2 and .offset == 0 and .total == 4'
check "from=+919876543210 unencoded" json_check '/messages?from=+919876543210' '.total == 2 and all(.data[]; .from == "+919876543210")'
check "since" json_check '/messages?since=2025-01-15T09:30:00Z' '.total == 2'
check "q=Hello" json_check '/messages?q=Hello' '.total == 2'
check "bad limit is 422" test "$(http_status 'localhost:8000/messages?limit=0')" = 422

# 6. Stats.
check "stats" json_check /stats '.total_messages == 4 and .senders_count == 3
  and ([.messages_per_sender[].count] | add) == 4
  and .first_message_ts == "2025-01-14T08:00:00Z" and .last_message_ts == "2025-01-15T11:00:00Z"'

# 7. Metrics.
metrics=$(curl -s localhost:8000/metrics)
check "http_requests_total line" grep -q '^http_requests_total{' <<<"$metrics"
check "webhook_requests_total line" grep -q '^webhook_requests_total{' <<<"$metrics"

# 8. Logs: every line JSON; webhook lines carry message_id and dup.
# (docker-compose v1 prints an "Attaching to …" line of its own first.)
logs=$($COMPOSE logs --no-color --no-log-prefix api 2>/dev/null | grep -v '^Attaching to ')
check "logs are not empty" test -n "$logs"
check "every log line is JSON" jq -e . <<<"$logs"
check "webhook lines have message_id and dup" \
  jq -se '[.[] | select(.path == "/webhook" and .status == 200)] | length >= 5 and all(has("message_id") and has("dup"))' <<<"$logs"

# The deployment.
cid=$($COMPOSE ps -q api)
check "runs as uid 65532" test "$(docker top "$cid" -eo uid,pid | awk 'NR > 1 {print $1}' | sort -u)" = 65532
check "root filesystem is read-only" test "$(docker inspect -f '{{.HostConfig.ReadonlyRootfs}}' "$cid")" = true
check "all capabilities dropped" test "$(docker inspect -f '{{.HostConfig.CapDrop}}' "$cid")" = "[ALL]"
check "/data is a named volume" test "$(docker inspect -f '{{range .Mounts}}{{if eq .Destination "/data"}}{{.Type}}{{end}}{{end}}' "$cid")" = volume
dbcopy=$(mktemp -d)
check "the volume holds app.db" bash -c "docker cp '$cid:/data/app.db' '$dbcopy/app.db' && test -s '$dbcopy/app.db'"
check "inlet backup copies the serving database" bash -c "$COMPOSE exec -T api /inlet backup /data/app-copy.db | jq -e '.messages == 4' >/dev/null && docker cp '$cid:/data/app-copy.db' '$dbcopy/copy.db' && test -s '$dbcopy/copy.db'"
rm -rf "$dbcopy"
check "health check reports healthy" bash -c "for i in \$(seq 30); do [ \"\$(docker inspect -f '{{.State.Health.Status}}' $cid)\" = healthy ] && exit 0; sleep 1; done; exit 1"
$COMPOSE restart api >/dev/null 2>&1
check "ready again after restart" wait_ready
check "data survived the restart" json_check /messages '.total == 4'
# Hot swap inside the sandbox: the guest comes from a read-only bind mount and is replaced
# by rename on the host, there and back, while signed webhooks keep arriving.
guests=$(mktemp -d)
chmod 755 "$guests"
cp target/wasm32-wasip2/release/inlet_guest.wasm "$guests/original.wasm"
# The same guest plus a custom section: another valid component with another digest.
{ cat "$guests/original.wasm"; printf '\x00\x14\x0dinlet-variantdocker'; } >"$guests/variant.wasm"
cp "$guests/original.wasm" "$guests/guest.wasm"
chmod 644 "$guests"/*.wasm
printf 'services:\n  api:\n    environment:\n      GUEST_COMPONENT: /guest/guest.wasm\n    volumes:\n      - %s:/guest:ro\n' \
  "$guests" >"$guests/override.yml"
live_guest() { curl -s localhost:8000/health/ready | jq -r .guest.sha256; }
digest() { sha256sum <"$guests/$1" | cut -d' ' -f1; }
swap_to() {
  cp "$guests/$1" "$guests/guest.wasm.new" && mv "$guests/guest.wasm.new" "$guests/guest.wasm"
  for _ in $(seq 1 100); do
    [ "$(live_guest)" = "$(digest "$1")" ] && return 0
    sleep 0.1
  done
  return 1
}
$COMPOSE -f docker-compose.yml -f "$guests/override.yml" up -d >/dev/null 2>&1
check "ready with the guest from a mounted directory" wait_ready
check "the mounted guest is live" test "$(live_guest)" = "$(digest original.wasm)"
for i in $(seq 1 300); do
  body="{\"message_id\":\"swap-$i\",\"from\":\"+15550000001\",\"to\":\"+15550000002\",\"ts\":\"2025-01-16T10:00:00Z\",\"text\":\"during a swap\"}"
  post "$body" "$(sign "$body")"
  echo
done >"$guests/statuses" &
loader=$!
sleep 1
check "swapped to another guest by rename on the host" swap_to variant.wasm
check "swapped back" swap_to original.wasm
wait "$loader"
check "no webhook failed across the swaps" test "$(sort -u "$guests/statuses")" = 200
check "every webhook stored once" json_check /messages '.total == 304'
rm -rf "$guests"

size=$(docker image inspect inlet:latest -f '{{.Size}}')
echo "runtime image inlet:latest: $((size / 1024 / 1024)) MiB"
check "runtime image under 100 MiB" test "$size" -lt $((100 * 1024 * 1024))

make down >/dev/null 2>&1
trap - EXIT
check "make down removed the volume" bash -c "! docker volume ls -q | grep -qx '$(basename "$PWD")_data'"

echo "docker-e2e: $passed passed, $failed failed"
test "$failed" -eq 0
