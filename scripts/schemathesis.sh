#!/usr/bin/env bash
# Runs the API conformance fuzzer Schemathesis against a live `homeward serve`: every check
# (`--checks all`), the stateful phase (following the description's links) included, with a
# bounded number of cases per operation; exits non-zero on any failure.
#
#   scripts/schemathesis.sh [extra `st run` options, e.g. --include-tag alarms]
#
# The server runs on loopback with free ports, the embedded PostgreSQL and broker, and a data
# folder of its own that is removed afterwards. Its log is kept in the target folder
# (schemathesis-serve.log). Schemathesis comes from PyPI into a virtual environment in the
# target folder, installed once (python3-venv through apt-get if the venv module is missing).
#   HOMEWARD_BIN                the binary (default: <target>/debug/homeward, built first)
#   HOMEWARD_ST_MAX_EXAMPLES    cases per operation and phase (default 25)
set -euo pipefail
cd "$(dirname "$0")/.."

ST_VERSION="4.32.5"
target="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target"
target="$(cd "$target" && pwd)"
venv="$target/schemathesis-venv"
bin="${HOMEWARD_BIN:-$target/debug/homeward}"
max_examples="${HOMEWARD_ST_MAX_EXAMPLES:-25}"
if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi

# Schemathesis, pinned, in its own virtual environment.
if ! "$venv/bin/st" --version 2>/dev/null | grep -q "version $ST_VERSION\$"; then
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    echo "installing python3-venv"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-venv
  fi
  echo "installing schemathesis $ST_VERSION"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$ST_VERSION"
fi

if [ -z "${HOMEWARD_BIN:-}" ]; then
  cargo build --quiet --bin homeward
fi

data="$(mktemp -d "${TMPDIR:-/tmp}/homeward-schemathesis.XXXXXX")"
log="$target/schemathesis-serve.log"
server=""
cleanup() {
  if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
    kill -TERM "$server" 2>/dev/null || true
    for _ in $(seq 600); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$data"
}
trap cleanup EXIT

export HW_EMQX_SECRET="fuzz-hook-secret-$RANDOM$RANDOM"
HOMEWARD__MQTT__EMQX_HOOK_SECRET="$HW_EMQX_SECRET" \
  "$bin" --data-dir "$data" --http-listen 127.0.0.1:0 --mqtt-listen 127.0.0.1:0 serve >"$log" 2>&1 &
server=$!
base=""
for _ in $(seq 1200); do
  base="$(sed -n 's|^ *HTTP API: *\(http://[0-9.:]*\)/v1/.*|\1|p' "$log" | head -n 1)"
  [ -n "$base" ] && break
  kill -0 "$server" 2>/dev/null || { cat "$log" >&2; echo "serve stopped" >&2; exit 1; }
  sleep 0.1
done
[ -n "$base" ] || { cat "$log" >&2; echo "serve did not start within 120 s" >&2; exit 1; }
for _ in $(seq 300); do
  curl -fsS -o /dev/null "$base/readyz" 2>/dev/null && break
  sleep 0.2
done

admin() { "$bin" --data-dir "$data" admin "$@" 2>/dev/null; }
admin create-organisation --name Fuzz --kind provider >/dev/null
export HW_TOKEN
HW_TOKEN="$(admin create-user --org Fuzz --name fuzzer --role provider-admin --service | sed -n 's/^token: //p')"
admin create-token --user 1 --label spare >/dev/null
export HW_SPARE_TOKEN_ID
HW_SPARE_TOKEN_ID="$(admin list-tokens --user 1 | awk -F'\t' '$8 == "spare" { print $1 }')"
admin create-organisation --name Phones --kind provider >/dev/null
export HW_PHONE_UID="phone-1" HW_PHONE_SECRET
HW_PHONE_SECRET="$(admin create-device --org Phones --uid "$HW_PHONE_UID" --kind phone | sed -n 's/^secret: //p')"
if [ -z "$HW_TOKEN" ] || [ -z "$HW_SPARE_TOKEN_ID" ] || [ -z "$HW_PHONE_SECRET" ]; then
  echo "could not create the fuzzer's credentials" >&2
  exit 1
fi

# Alarms, so that the alarm operations (and the links from their lists) have ids to work on:
# pendants of the fuzzer's organisation press their buttons, over MQTT as devices do (the wire
# format's JSON events on homeward/v1/<uid>/events). One open alarm per pendant; several,
# because the fuzzer's own lifecycle calls may close some.
mqtt_port="$(sed -n 's|^ *MQTT broker: *mqtt://[0-9.]*:\([0-9]*\).*|\1|p' "$log" | head -n 1)"
[ -n "$mqtt_port" ] || { echo "could not find the broker's port" >&2; exit 1; }
now_ms="$(($(date +%s) * 1000))"
pendants=8
for n in $(seq "$pendants"); do
  uid="pendant-$n"
  secret="$(admin create-device --org Fuzz --uid "$uid" --kind pendant | sed -n 's/^secret: //p')"
  [ -n "$secret" ] || { echo "could not register $uid" >&2; exit 1; }
  mosquitto_pub -h 127.0.0.1 -p "$mqtt_port" -q 1 -i "$uid" -u "$uid" -P "$secret" \
    -t "homeward/v1/$uid/events" -m "{\"seq\": 1, \"t\": $((now_ms - 1000)), \"kind\": \"pendant_alarm\"}"
done
alarms=0
for _ in $(seq 100); do
  alarms="$(curl -fsS -H "Authorization: Bearer $HW_TOKEN" "$base/v1/alarms" | grep -o '"id":' | wc -l || true)"
  [ "$alarms" -ge "$pendants" ] && break
  sleep 0.1
done
echo "seeded $alarms open alarms"

# /v1/live is an endless event stream, which a request-and-answer fuzzer cannot read to its
# end; tests/api covers it.
status=0
# Integer path and query parameters are sent as digits (scripts/schemathesis_hooks.py says why).
SCHEMATHESIS_HOOKS="$PWD/scripts/schemathesis_hooks.py" \
"$venv/bin/st" --no-color --config-file scripts/schemathesis.toml run "$base/v1/openapi.json" \
  --checks all \
  --phases examples,coverage,fuzzing,stateful \
  --max-examples "$max_examples" \
  --exclude-path /v1/live \
  --request-timeout 10 \
  --report junit --report-dir "$target/schemathesis-report" \
  "$@" || status=$?
if [ "$status" -ne 0 ]; then
  echo "schemathesis: failures (exit $status); the server's log is in $log" >&2
fi
exit "$status"
