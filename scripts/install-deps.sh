#!/usr/bin/env bash
# Installs what Homeward's run and test commands need and are missing; safe to run repeatedly.
#   scripts/install-deps.sh run    what `make run` needs
#   scripts/install-deps.sh test   what `make test` needs (adds Mosquitto and its clients, curl,
#                                  Chromium and its WebDriver for the console's browser tests,
#                                  nextest)
# Debian packages come through apt-get (with sudo when not root); `apt-get update` runs once,
# only when something is missing.
set -euo pipefail
purpose="${1:-run}"

if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi

debs=(postgresql ca-certificates)
if [ "$purpose" = "test" ]; then
  debs+=(mosquitto mosquitto-clients curl chromium chromium-driver)
fi

missing=()
for pkg in "${debs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Debian starts a system Mosquitto on port 1883 after installing it; Homeward's tests start
# their own on free ports and `make run` embeds its own broker on 1883, so stop the system one.
if [ "$purpose" = "test" ] || [ "$purpose" = "run" ]; then
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet mosquitto 2>/dev/null; then
    $SUDO systemctl stop mosquitto || true
  fi
  if pgrep -x mosquitto >/dev/null 2>&1 && [ -f /etc/mosquitto/mosquitto.conf ]; then
    pids=$(pgrep -f '^/usr/sbin/mosquitto -c /etc/mosquitto/mosquitto.conf' || true)
    if [ -n "$pids" ]; then $SUDO kill $pids || true; fi
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install the Rust toolchain (rustup) first" >&2
  exit 1
fi

if [ "$purpose" = "test" ]; then
  if ! cargo nextest --version >/dev/null 2>&1; then
    echo "installing cargo-nextest"
    cargo install cargo-nextest --locked
  fi
fi
