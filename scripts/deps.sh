#!/usr/bin/env bash
# Installs what turtles needs to build, test and demo on Debian, saying
# what it does. Safe to run again: it installs only what is missing.
set -euo pipefail

need_pkgs=()
# strace: the attack suite watches the real server's fsyncs with it.
# bwrap (bubblewrap): bots isolate the commands they run (docs/trust.md).
# promtool and prometheus (package prometheus): the tests of
# deploy/prometheus check the rules with promtool, and cmd/turtles runs a
# private Prometheus server against turtles serve (never the system-wide
# one the package may start).
# ssh-keygen signs and verifies releases, dpkg-deb builds the .deb and
# systemd-analyze checks the units (make test: release, deploy/systemd).
# socat joins a guest's connection to a cluster's registry (package registry).
for cmd_pkg in git:git curl:curl openssl:openssl sqlite3:sqlite3 chromium:chromium strace:strace bwrap:bubblewrap \
    ssh-keygen:openssh-client dpkg-deb:dpkg systemd-analyze:systemd promtool:prometheus socat:socat; do
  cmd=${cmd_pkg%%:*} pkg=${cmd_pkg#*:}
  command -v "$cmd" >/dev/null 2>&1 || need_pkgs+=("$pkg")
done
[ -e /etc/ssl/certs/ca-certificates.crt ] || need_pkgs+=(ca-certificates)
# Perl's TAP::Parser (package perl; perl-base alone lacks it): the tap
# package's differential test reads TAP with it, as prove does.
perl -MTAP::Parser -e 1 >/dev/null 2>&1 || need_pkgs+=(perl)
# RabbitMQ: the tests of queue/amqp start a private node of it (never the
# system-wide one the package may start).
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || need_pkgs+=(rabbitmq-server)
# PostgreSQL 15: the tests of state/postgres start a private server of it
# (never the system-wide cluster the package may start).
[ -x /usr/lib/postgresql/15/bin/postgres ] || need_pkgs+=(postgresql-15)
# Test VMs: QEMU boots them (KVM when /dev/kvm is usable, TCG otherwise),
# qemu-img makes their overlays, debootstrap and mkfs.ext4 build the Debian
# image the vm, bot and cmd tests boot (built once, cached outside the repo).
for cmd_pkg in qemu-system-x86_64:qemu-system-x86 qemu-img:qemu-utils debootstrap:debootstrap mkfs.ext4:e2fsprogs; do
  cmd=${cmd_pkg%%:*} pkg=${cmd_pkg#*:}
  command -v "$cmd" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin command -v "$cmd" >/dev/null 2>&1 || need_pkgs+=("$pkg")
done

if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "==> installing Debian packages: ${need_pkgs[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
else
  echo "==> Debian packages: all present (git, curl, openssl, sqlite3, chromium, strace, bubblewrap, prometheus, openssh-client, dpkg, systemd, socat)"
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

# versitygw: the real S3 server the store/s3 tests and the log benchmarks
# run against. Compiled once into the user cache (the tests do the same
# when it is missing); the path must match store/s3/s3test.
vgw_version=v1.8.0
vgw_bin="${XDG_CACHE_HOME:-$HOME/.cache}/turtles/versitygw-$vgw_version"
if [ -x "$vgw_bin/versitygw" ]; then
  echo "==> versitygw $vgw_version: present in $vgw_bin"
else
  echo "==> installing versitygw $vgw_version into $vgw_bin (compiles once, a few minutes)"
  mkdir -p "$vgw_bin"
  (cd / && GOBIN="$vgw_bin" GOFLAGS= GOWORK=off go install "github.com/versity/versitygw/cmd/versitygw@$vgw_version")
fi
