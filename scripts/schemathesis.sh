#!/usr/bin/env bash
# The admin API under schemathesis (property-based requests generated from the OpenAPI document):
# starts a hub of its own on a fresh database, signs in as a SYSADMIN (password, then the one-time
# code from the local mailbox: the two-step login end to end), and runs schemathesis with
# the checks "no server error" and "every status is one the document lists". Exit 0 only when
# schemathesis found no failure.
#
#   scripts/schemathesis.sh [--bin target/debug/sentient-hub] [--max-examples 20]
#
# Needs the machine's PostgreSQL and NATS (as the tests do) and `pip install schemathesis`.
# Operations that would end the run's own session (logout, force logout) are left out.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/debug/sentient-hub
max_examples=20
while [[ $# -gt 0 ]]; do
  case $1 in
    --bin) bin=$2; shift 2 ;;
    --max-examples) max_examples=$2; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[[ -x $bin ]] || { echo "no hub binary at $bin (cargo build first, or --bin)" >&2; exit 2; }
command -v schemathesis >/dev/null || { echo "schemathesis missing: pip install schemathesis" >&2; exit 2; }

work=$(mktemp -d /tmp/sentient-schemathesis.XXXXXX)
db="sentient_schemathesis_$$"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export SENTIENT_ENV=local
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db"
export SENTIENT__SERVER__PORT=$port
export SENTIENT__TELEMETRY__FILTER=warn
export SENTIENT__AUTH__LOGIN_BURST=100000
export SENTIENT__AUTH__LOGIN_PER_MINUTE=100000
# Cheap hashes: the run makes thousands of requests, some of them logins.
export SENTIENT__AUTH__ARGON2_MEMORY_KIB=64
export SENTIENT__AUTH__ARGON2_ITERATIONS=1
export SENTIENT__ALERTS__DETECT_EVERY_MINS=0
# No mail server in local mode: the sign-in code lands here as a file.
export SENTIENT__SMTP__MAILBOX_DIR="$work/mailbox"
# Its own alert subject and deployment name: other hubs may use this NATS with the defaults.
export SENTIENT__ALERTS__SUBJECT="alerts.schemathesis.$$"

hub_pid=
cleanup() {
  if [[ -n $hub_pid ]]; then kill "$hub_pid" 2>/dev/null || true; wait "$hub_pid" 2>/dev/null || true; fi
  psql -q -h 127.0.0.1 -U postgres -d postgres -c "drop database if exists $db with (force)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

"$bin" migrate >"$work/migrate.log" 2>&1 || { cat "$work/migrate.log" >&2; exit 2; }
password="schemathesis-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
SENTIENT_ADMIN_PASSWORD=$password "$bin" admin create-user --username fuzz.admin \
  --email fuzz.admin@factory.local --role SYSADMIN >"$work/admin.log" 2>&1 \
  || { cat "$work/admin.log" >&2; exit 2; }

"$bin" serve >"$work/hub.log" 2>&1 &
hub_pid=$!
for _ in $(seq 1 120); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  kill -0 "$hub_pid" 2>/dev/null || { tail -n 30 "$work/hub.log" >&2; echo "the hub exited" >&2; exit 2; }
  sleep 0.5
done

challenge=$(curl -fsS -X POST "http://127.0.0.1:$port/api/v1/auth/login" \
  -H 'content-type: application/json' \
  -d "{\"login\":\"fuzz.admin\",\"password\":\"$password\"}" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["challenge_id"])')
code=
for _ in $(seq 1 100); do
  code=$(cat "$work"/mailbox/*.eml 2>/dev/null | python3 -c \
    'import re, sys; m = re.search(r"verification code: (\d{6})", sys.stdin.read()); print(m.group(1) if m else "")')
  [[ -n $code ]] && break
  sleep 0.1
done
[[ -n $code ]] || { tail -n 30 "$work/hub.log" >&2; echo "no sign-in code in the local mailbox" >&2; exit 2; }
token=$(curl -fsS -X POST "http://127.0.0.1:$port/api/v1/auth/login/verify" \
  -H 'content-type: application/json' \
  -d "{\"challenge_id\":\"$challenge\",\"code\":\"$code\"}" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')

set +e
# From the work directory: schemathesis keeps its replay data in ./.schemathesis.
cd "$work"
schemathesis run "http://127.0.0.1:$port/api/v1/openapi.json" \
  --checks not_a_server_error,status_code_conformance \
  --header "Authorization: Bearer $token" \
  --exclude-path /api/v1/auth/logout \
  --exclude-path-regex '^/api/v1/sessions/' \
  --max-examples "$max_examples" \
  --workers 2 \
  --request-timeout 10 \
  --suppress-health-check all \
  --no-color
status=$?
set -e
if [[ $status -ne 0 ]]; then
  echo "--- last lines of the hub's log ($work/hub.log)" >&2
  tail -n 40 "$work/hub.log" >&2
fi
exit $status
