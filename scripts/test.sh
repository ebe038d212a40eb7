#!/bin/bash
# The whole test suite (make test): every package, the end-to-end tests on
# the real binary, and the attack suite, whose count of attacks tried and
# held is the last line.
#
# The long packages start first, and more test binaries run at once than
# there are cores: queue/amqp spends most of its time waiting for
# RabbitMQ's once-a-minute consumer-timeout check, and the end-to-end and
# VM tests wait on processes, so two slots would leave a core idle while
# they wait. The attack suite runs alongside, into a file printed at the
# end. TEST_PROCS sets how many test binaries run at once.
set -u
GO=${GO:-go}
procs=${TEST_PROCS:-3}
start=$(date +%s)

# Longest first (docs/benchmarks.md has the times).
slow=(./queue/amqp ./cmd/turtles ./bot ./triage/corpus ./vm ./release/ociimage ./release ./state/postgres ./deploy/kubernetes ./release/deb ./hook)
mapfile -t rest < <($GO list ./... | sed "s#^$($GO list -m)#.#" | grep -v '^./attack$' |
	grep -vxF -f <(printf '%s\n' "${slow[@]}"))

attack_out=$(mktemp)
trap 'rm -f "$attack_out"' EXIT
echo "==> attack suite (docs/trust.md), alongside: every attack on the real binary must fail"
(cd attack && $GO test -count=1 -timeout 10m >"$attack_out" 2>&1; echo "exit $?" >>"$attack_out") &
attack_pid=$!

echo "==> go test (all packages, including end-to-end; $procs test binaries at once)"
$GO test -count=1 -p "$procs" -timeout 20m "${slow[@]}" "${rest[@]}"
rc=$?

wait "$attack_pid"
echo "==> attack suite output"
head -n -1 "$attack_out" | grep -vE '^[0-9]+ attacks tried, [0-9]+ held'
arc=$(tail -n 1 "$attack_out" | sed 's/^exit //')
echo "==> make test took $(($(date +%s) - start)) s"
if [ "$rc" -ne 0 ] || [ "$arc" -ne 0 ]; then
	echo "make test: FAILED (packages exit $rc, attack suite exit $arc)" >&2
	exit 1
fi
# The attack suite's summary, last.
grep -E '^[0-9]+ attacks tried, [0-9]+ held' "$attack_out" | tail -n 1
