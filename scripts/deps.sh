#!/usr/bin/env bash
# Installs what turtles needs to build, test and demo on Debian, saying
# what it does. Safe to run again: it installs only what is missing.
set -euo pipefail

need_pkgs=()
for cmd_pkg in git:git curl:curl openssl:openssl sqlite3:sqlite3; do
  cmd=${cmd_pkg%%:*} pkg=${cmd_pkg#*:}
  command -v "$cmd" >/dev/null 2>&1 || need_pkgs+=("$pkg")
done
[ -e /etc/ssl/certs/ca-certificates.crt ] || need_pkgs+=(ca-certificates)

if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "==> installing Debian packages: ${need_pkgs[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
else
  echo "==> Debian packages: all present (git, curl, openssl, sqlite3)"
fi

if ! command -v go >/dev/null 2>&1; then
  if [ -x /usr/local/go/bin/go ]; then
    echo "==> Go is at /usr/local/go/bin; add it to PATH" >&2
  else
    echo "==> Go is missing: install Go 1.26 or newer (https://go.dev/doc/install) and run again" >&2
  fi
  exit 1
fi
want=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$(dirname "$0")/../go.mod")
echo "==> $(go version) (go.mod wants >= $want)"
