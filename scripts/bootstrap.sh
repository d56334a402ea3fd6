#!/usr/bin/env bash
# Installs what `make run` and `make test` need, idempotently: Debian packages only when missing, and a .venv
# from requirements.txt, reinstalled only when requirements.txt changes.
set -euo pipefail
cd "$(dirname "$0")/.."

# redis-server: the store; pcscd + libpcsclite-dev + vsmartcard-vpcd: the PC/SC path and its virtual reader;
# swig: builds pyscard where no wheel fits; libusb-1.0-0: nfcpy's USB readers; openssl: the independent client;
# chromium + fonts-noto-cjk: the browser tests (Playwright drives Debian's chromium; the font renders Japanese);
# nginx: the production-shape test's TLS-terminating proxy (run as a child on loopback, never as a system service).
DEBIAN_PACKAGES=(redis-server pcscd libpcsclite-dev vsmartcard-vpcd swig libusb-1.0-0 openssl chromium fonts-noto-cjk
                 nginx)
# poppler-utils (pdfsig) and libnss3-tools (certutil): an independent check of the PAdES files the demo RP signs,
# against an NSS trust store the test makes (tests/test_pades.py).
DEBIAN_PACKAGES+=(poppler-utils libnss3-tools)
# `make bench` (BOOTSTRAP_BENCH=1) adds wrk, the load generator that runs in its own process.
[ "${BOOTSTRAP_BENCH:-0}" = 1 ] && DEBIAN_PACKAGES+=(wrk)
# node + npm: the relying-party example runs under Node.js (openid-client) in the tests. A machine that already has
# them (from anywhere) keeps its own; only where neither is found do Debian's packages come in.
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || DEBIAN_PACKAGES+=(nodejs npm)
PYTHON=${PYTHON:-python3.11}

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v "$PYTHON" >/dev/null 2>&1; then PYTHON=python3; fi
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: installing Python packages from requirements.txt"
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
  echo "$want" > "$stamp"
fi

# tests/node: the npm packages the tests use (openid-client for the relying-party example, axe-core for the
# accessibility check in Chromium), exactly as package-lock.json pins them; reinstalled only when the lock changes.
# No npm here is an error, never a reason to skip: the tests that need these packages would not run.
if ! command -v npm >/dev/null 2>&1; then
  echo "bootstrap: npm is missing (install Node.js with npm); the browser accessibility tests need axe-core" >&2
  exit 1
fi
node_stamp=tests/node/node_modules/.package-lock.sha256
node_want=$(sha256sum tests/node/package-lock.json | cut -d' ' -f1)
if [ "$(cat "$node_stamp" 2>/dev/null)" != "$node_want" ]; then
  echo "bootstrap: installing npm packages for the tests from tests/node/package-lock.json"
  (cd tests/node && npm ci --cache ../../.npm-cache --no-audit --no-fund --loglevel=error)
  echo "$node_want" > "$node_stamp"
fi
