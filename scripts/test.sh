#!/usr/bin/env bash
# The test command of tenantvault: installs the test-only tools the tests
# need when they are missing (kcat, a Kafka client that shares no code with
# the vault), then runs every test with the race detector.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v kcat >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing kcat (Debian package) ..."
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat >/dev/null
  elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    sudo apt-get update -qq >/dev/null
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat >/dev/null
  else
    echo "warning: kcat is not installed; the kcat end-to-end test will skip (and fail under CI=true)" >&2
  fi
fi

go vet ./...
go test -race -timeout 30m "$@" ./...
