#!/usr/bin/env bash
# make demo: the whole loop on embedded defaults, step by step.
#   example repository -> turtles serve -> signed GitHub webhook -> plan task
#   -> test tasks on the bot -> logs -> statuses -> outcome and log page.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
# DEMO_BIN, DEMO_DIR and DEMO_NO_VM=1 (no Debian VM context) are for
# TestDemo in cmd/turtles, which runs this script as a user would.
bin=${DEMO_BIN:-$top/bin/turtles}
demo=${DEMO_DIR:-$top/demo-data}
port=${DEMO_PORT:-18080}
url=http://127.0.0.1:$port
secret=demo-webhook-secret

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

say "Starting afresh in $demo"
rm -rf "$demo"
mkdir -p "$demo"

say "Creating an example git repository with a .turtles.yaml"
repo=$demo/hello
mkdir -p "$repo/test"
cat > "$repo/.turtles.yaml" <<'YAML'
# Each context becomes a commit status; its command runs in a checkout.
contexts:
  - name: unit-tests
    command: ./test/unit.sh
    timeout: 5m
  - name: shellcheck-lite
    command: sh -n test/unit.sh && echo "syntax ok"
YAML
cat > "$repo/test/unit.sh" <<'SH'
#!/bin/sh
# A tiny test suite that speaks TAP.
echo "1..3"
for i in 1 2 3; do
  sleep 1
  echo "ok $i - adds numbers ($i + $i = $((i + i)))"
done
SH
chmod +x "$repo/test/unit.sh"
# The same tests in a Debian 12 VM (QEMU; TCG when there is no /dev/kvm).
# The image is built once with debootstrap (root, a few minutes) and
# cached; without root or QEMU the demo runs without this context.
expect=3
images=
if [ "${DEMO_NO_VM:-}" = 1 ]; then
  echo "    (DEMO_NO_VM=1: no VM context)"
elif vm_manifest=$("$bin" image build debian-12 --cached 2>"$demo/image-build.log"); then
  images=$(dirname "$vm_manifest")
  cat >> "$repo/.turtles.yaml" <<'YAML'
  - name: debian-vm
    image: debian-12
    command: ./test/unit.sh && echo "ran in $(. /etc/os-release; echo $PRETTY_NAME), kernel $(uname -r)"
    timeout: 10m
YAML
  expect=4
else
  echo "    (no VM context: building the Debian image failed; see $demo/image-build.log)"
fi
git -C "$repo" init -q -b main
git -C "$repo" -c user.name=Demo -c user.email=demo@example.com add -A
git -C "$repo" -c user.name=Demo -c user.email=demo@example.com commit -qm "Add unit tests"
sha=$(git -C "$repo" rev-parse HEAD)
echo "    $repo at $sha"
cat "$repo/.turtles.yaml" | sed 's/^/    | /'

say "Starting 'turtles serve' (embedded queue, one bot, logs in $demo/data)"
TURTLES_WEBHOOK_SECRET=$secret "$bin" serve --data-dir "$demo/data" --listen "127.0.0.1:$port" \
  --slots 2 ${images:+--images-dir "$images"} >"$demo/serve.log" 2>&1 &
serve_pid=$!
stop_server() { kill -TERM "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null || true; }
trap stop_server EXIT
for i in $(seq 1 100); do
  curl -fsS "$url/healthz" >/dev/null 2>&1 && break
  kill -0 "$serve_pid" 2>/dev/null || { cat "$demo/serve.log"; echo "turtles serve exited" >&2; exit 1; }
  sleep 0.1
done
echo "    listening on $url (server log: $demo/serve.log)"

# A push to main: its pusher has write access, so it runs without a trust
# decision. (A pull request needs the gate, which looks the author up on
# GitHub; the demo has no GitHub token.)
say "Sending a signed GitHub push webhook (main at ${sha:0:12}) to $url/hook/github"
payload=$demo/push.json
cat > "$payload" <<JSON
{
  "ref": "refs/heads/main",
  "before": "0000000000000000000000000000000000000000",
  "after": "$sha",
  "repository": {"full_name": "demo/hello", "name": "hello", "owner": {"login": "demo"}, "clone_url": "file://$repo"},
  "pusher": {"name": "demo"},
  "sender": {"login": "demo"}
}
JSON
sig=$(openssl dgst -sha256 -hmac "$secret" -r "$payload" | cut -d' ' -f1)
curl -sS -X POST "$url/hook/github" \
  -H "Content-Type: application/json" -H "X-GitHub-Event: push" \
  -H "X-GitHub-Delivery: demo-$(date +%s%N)" -H "X-Hub-Signature-256: sha256=$sig" \
  --data-binary "@$payload" | sed 's/^/    /'
echo

say "Waiting for the tasks of $sha to finish (the bot plans from .turtles.yaml, then runs each context)"
set +e
"$bin" status --server "$url" --sha "$sha" --expect $expect --wait 10m
rc=$?
set -e

say "Statuses turtles set (no GitHub token here, so they are logged instead of sent)"
grep 'status (not sent' "$demo/serve.log" | sed -e 's/.*context=/    context=/' || true

say "Outcome"
case $rc in
  0) echo "    all contexts passed" ;;
  1) echo "    a test failed" ;;
  *) echo "    turtles could not run everything (infrastructure); see $demo/serve.log" ;;
esac
log=$(find "$demo/data/store" -path '*unit-tests/1/log' -not -path '*/.turtles-store/*' | head -1)
echo "    log pages: the LOG column above (the JSON API: $url/api/v1/tasks?sha=$sha)"
[ -n "$log" ] && echo "    log file:  $log"
if [ -t 0 ]; then
  printf '\n    The log pages stay up while the server runs. Press Enter to stop it. '
  read -r _
fi
say "Stopping turtles serve (SIGTERM drains: nothing is running now)"
exit $rc
