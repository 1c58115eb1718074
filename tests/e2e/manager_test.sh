#!/usr/bin/env bash
# End-to-end test of the operator's run mode (src/manager/manager.c) against
# the real control plane: several `provisio --leader-elect ...` processes with
# the admin kubeconfig, a Lease in a namespace of the test's own.
#
#  1. probes: against an unreachable API server /healthz is 200 at once and
#     /readyz stays 500 while informers cannot sync (when the binary has
#     informers; with none registered, readiness is immediate and the test
#     says so); SIGTERM still exits 0 promptly.
#  2. per lease setting (short: 4s/3s/1s; then the defaults 15s/10s/2s unless
#     MANAGER_TEST_DEFAULTS=0), with two candidates A and B:
#     - /healthz and /readyz turn 200;
#     - exactly one leads: the Lease's holderIdentity is its identity (from
#       its startup log line) and leader_election_master_status is 1 in its
#       /metrics and 0 in the other's, and stays so for a few retry periods;
#     - /metrics parses as Prometheus text (every sample line is
#       `name{labels} value`, HELP/TYPE lines well formed) and holds the
#       controller-runtime / client-go names;
#     - with controllers in the binary: an IPPool is made Ready by the leader
#       while the standby reconciles nothing (controller_runtime_reconcile_total),
#       and after a failover the new leader reconciles what it had cached;
#     - kill -9 of the leader: the standby holds the Lease within lease
#       duration + retry period (DESIGN.md; a standby polls within one retry
#       period and wakes at the local expiry), plus 1 s for requests and
#       scheduling on a loaded machine;
#       the time is printed;
#     - SIGTERM of the new leader: exit 0 within 5 s, and the Lease is
#       released (holderIdentity empty, leaseDurationSeconds 1);
#     - a third process started after the release leads within 3 s;
#     - a standby takes over from a SIGTERMed leader within retry + 1 s
#       (graceful failover, printed);
#     - the idle RSS of a standby is printed;
#     - when another holder takes the Lease (kubectl patch), the leader
#       exits 1 with "leader election lost" within renew deadline + retry.
#  3. every line any process wrote to stderr is one JSON object with level,
#     ts and msg, and no line contains the admin client key.
#
# Figures are printed as "# figure: ..." lines.
#
# Environment (set by the ctest fixture, see tests/CMakeLists.txt):
#   KUBECONFIG           admin kubeconfig of the control plane
#   PATH                 with the control plane's bin/ (kubectl) first
#   PROVISIO_BINARY      the built provisio
#   PROVISIO_SOURCE_DIR  the source tree (crds/)
# Run by hand:
#   hack/kube-local up /tmp/kl
#   KUBECONFIG=/tmp/kl/kubeconfig PATH=/tmp/kl/bin:$PATH PROVISIO_SOURCE_DIR=$PWD \
#     PROVISIO_BINARY=build/provisio bash tests/e2e/manager_test.sh
#
# Output is TAP; the exit status is non-zero at the first failed check (the
# steps depend on each other), after the processes' logs were printed.
set -euo pipefail

: "${KUBECONFIG:?KUBECONFIG must name the kube-local admin kubeconfig}"
: "${PROVISIO_BINARY:?PROVISIO_BINARY must name the built provisio}"
KUBECTL=${KUBECTL:-kubectl}
SRC=${PROVISIO_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
for tool in "$KUBECTL" python3 curl; do
  command -v "$tool" >/dev/null || {
    echo "Bail out! $tool not found"
    exit 1
  }
done
[ -x "$PROVISIO_BINARY" ] || {
  echo "Bail out! $PROVISIO_BINARY is not an executable"
  exit 1
}

ns=e2e-mgr-$(date +%s)-$$
tmp=$(mktemp -d)
declare -A PID MPORT PPORT
POOLS=()
n=0

k() { "$KUBECTL" "$@"; }

cleanup() {
  set +e
  local name
  for name in "${!PID[@]}"; do
    kill -9 "${PID[$name]}" 2>/dev/null
  done
  k delete namespace "$ns" --wait=false >/dev/null 2>&1
  for name in "${POOLS[@]}"; do
    k delete ippool "$name" --wait=false --ignore-not-found >/dev/null 2>&1
  done
  # Sanitizer reports of the processes it started, before their logs go
  # (tests/e2e/sanitized fails the test on the printed lines).
  "${BASH_SOURCE[0]%/*}/scan-sanitizer-reports" "$tmp"
  rm -rf "$tmp"
}
trap cleanup EXIT

dump_logs() {
  local f
  for f in "$tmp"/*.log; do
    [ -e "$f" ] || continue
    echo "# ---- $(basename "$f") (last 30 lines)"
    tail -n 30 "$f" | sed 's/^/#   /'
  done
}

ok() {
  n=$((n + 1))
  echo "ok $n - $*"
}

fail() {
  n=$((n + 1))
  echo "not ok $n - $*"
  dump_logs
  echo "1..$n"
  exit 1
}

figure() { echo "# figure: $*"; }

now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'; }
# lt A B: is A < B (decimals)?
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
calc() { awk "BEGIN { printf \"%.2f\", $* }"; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start NAME FLAGS...: run provisio in the background with free ports.
start() {
  local name=$1
  shift
  MPORT[$name]=$(free_port)
  PPORT[$name]=$(free_port)
  while [ "${PPORT[$name]}" = "${MPORT[$name]}" ]; do PPORT[$name]=$(free_port); done
  "$PROVISIO_BINARY" --metrics-bind-address="127.0.0.1:${MPORT[$name]}" \
    --health-probe-bind-address="127.0.0.1:${PPORT[$name]}" "$@" \
    >"$tmp/$name.out" 2>"$tmp/$name.log" &
  PID[$name]=$!
}

# finish NAME: wait for the process and forget it; its exit status in RC.
finish() {
  RC=0
  wait "${PID[$1]}" 2>/dev/null || RC=$?
  unset "PID[$1]"
}

alive() { kill -0 "${PID[$1]}" 2>/dev/null; }

code() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$1$2" || true; }
healthz() { code "${PPORT[$1]}" /healthz; }
readyz() { code "${PPORT[$1]}" /readyz; }
metrics() { curl -sf --max-time 2 "http://127.0.0.1:${MPORT[$1]}/metrics"; }
master() { metrics "$1" 2>/dev/null | awk '/^leader_election_master_status\{/ { print $2 }'; }

# eventually SECONDS CMD...: poll CMD every 50 ms until it succeeds.
eventually() {
  local limit=$1
  shift
  local start=$EPOCHREALTIME
  while ! "$@"; do
    lt "$(since "$start")" "$limit" || return 1
    sleep 0.05
  done
}

# log_field NAME MSG FIELD: FIELD of the first log line of NAME with msg MSG.
log_field() {
  python3 - "$tmp/$1.log" "$2" "$3" <<'EOF'
import json, sys
path, msg, field = sys.argv[1:]
for line in open(path, errors="replace"):
    try:
        o = json.loads(line)
    except ValueError:
        continue
    if o.get("msg") == msg and field in o:
        print(o[field])
        break
EOF
}

identity() { log_field "$1" "starting manager" identity; }
holder() { k get lease -n "$ns" "$LEASE" -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || true; }
lease_duration() { k get lease -n "$ns" "$LEASE" -o jsonpath='{.spec.leaseDurationSeconds}' 2>/dev/null || true; }

is_code() { [ "$("$1" "$2")" = "$3" ]; }
is_master() { [ "$(master "$1")" = "$2" ]; }
holds() { [ "$(holder)" = "$(identity "$1")" ] && is_master "$1" 1; }
has_identity() { [ -n "$(identity "$1")" ]; }

# check_metrics NAME: Prometheus text format and controller-runtime names.
check_metrics() {
  local name=$1 controllers
  metrics "$name" >"$tmp/$name.metrics" || fail "$name: GET /metrics"
  controllers=$(log_field "$name" "Starting informers" controllers)
  python3 - "$tmp/$name.metrics" "${controllers:-0}" <<'EOF' || fail "$name: /metrics is not valid Prometheus text with the expected names"
import re, sys
text = open(sys.argv[1]).read()
controllers = int(sys.argv[2])
name = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
label = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
value = r"(?:[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)|NaN|[-+]Inf)"
sample = re.compile(r"^(%s)(\{(?:%s(?:,%s)*)?\})? %s$" % (name, label, label, value))
help_ = re.compile(r"^# HELP (%s) .*$" % name)
type_ = re.compile(r"^# TYPE (%s) (counter|gauge|histogram|summary|untyped)$" % name)
bad, names = [], set()
for i, line in enumerate(text.split("\n")[:-1], 1):
    if line.startswith("#"):
        if not (help_.match(line) or type_.match(line)):
            bad.append((i, line))
        continue
    m = sample.match(line)
    if not m:
        bad.append((i, line))
        continue
    names.add(m.group(1))
if not text.endswith("\n"):
    bad.append((0, "no final newline"))
for i, line in bad[:10]:
    print("# bad line %d: %r" % (i, line))
want = ["leader_election_master_status", "rest_client_requests_total",
        "process_resident_memory_bytes", "process_cpu_seconds_total"]
if controllers > 0:
    want += ["controller_runtime_reconcile_total", "controller_runtime_reconcile_errors_total",
             "controller_runtime_max_concurrent_reconciles", "controller_runtime_active_workers",
             "workqueue_depth", "workqueue_adds_total", "workqueue_retries_total",
             "provisio_informer_objects", "provisio_informer_pending_notifications",
             "provisio_informer_pending_notifications_max"]
missing = [w for w in want if w not in names]
for w in missing:
    print("# missing metric %s" % w)
sys.exit(1 if bad or missing else 0)
EOF
  ok "$name: /metrics is Prometheus text with the controller-runtime names"
}

# reconciles NAME: sum of controller_runtime_reconcile_total over every result.
reconciles() { metrics "$1" | awk '/^controller_runtime_reconcile_total\{/ { s += $2 } END { print s + 0 }'; }
reconciled() { [ "$(reconciles "$1")" -gt 0 ]; }

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/${PID[$1]}/status"; }

# ---- setup ----------------------------------------------------------------------

k create namespace "$ns" >/dev/null || fail "create namespace $ns"
# The domains' informers watch the CRDs: install them so informers can sync.
k apply --server-side --force-conflicts -f "$SRC/crds" >/dev/null || fail "apply CRDs"
k wait --for=condition=Established --timeout=60s -f "$SRC/crds" >/dev/null || fail "CRDs established"
ok "namespace $ns and CRDs ready"

# ---- 1. probes against an unreachable API server ----------------------------

dead_port=$(free_port)
# Its user is an exec credential plugin that records the environment it is
# given (plugins run before the connection is tried).
cat >"$tmp/plugin.sh" <<EOF
#!/bin/sh
env >"$tmp/plugin.env.tmp" && mv "$tmp/plugin.env.tmp" "$tmp/plugin.env"
echo '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"unused"}}'
EOF
chmod +x "$tmp/plugin.sh"
cat >"$tmp/unreachable.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: dead
  cluster:
    server: https://127.0.0.1:$dead_port
    insecure-skip-tls-verify: true
users:
- name: plugin
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: $tmp/plugin.sh
      interactiveMode: Never
contexts:
- name: dead
  context: {cluster: dead, user: plugin}
current-context: dead
EOF
start unreach --kubeconfig="$tmp/unreachable.kubeconfig"
eventually 20 is_code healthz unreach 200 || fail "unreachable server: /healthz never 200"
ok "unreachable server: /healthz is 200"
# The operator re-executed itself with glibc's per-thread malloc caches off
# (src/manager/main.c); the pid stays the one started.
tunables=$(tr '\0' '\n' <"/proc/${PID[unreach]}/environ" | sed -n 's/^GLIBC_TUNABLES=//p')
[ "$tunables" = glibc.malloc.tcache_count=0 ] ||
  fail "the operator runs without glibc.malloc.tcache_count=0 (GLIBC_TUNABLES=$tunables)"
ok "the operator runs with GLIBC_TUNABLES=$tunables"
tr '\0' '\n' <"/proc/${PID[unreach]}/environ" | grep -qx GNUTLS_NO_IMPLICIT_INIT=1 ||
  fail "the operator was started without GNUTLS_NO_IMPLICIT_INIT=1"
eventually 20 test -s "$tmp/plugin.env" || fail "the exec credential plugin never ran"
leaked=$(grep -E '^(GNUTLS_NO_IMPLICIT_INIT|PROVISIO_REEXEC|PROVISIO_OLD_GLIBC_TUNABLES|PROVISIO_SET_[A-Z_]*|GLIBC_TUNABLES)=' "$tmp/plugin.env" || true)
[ -z "$leaked" ] || fail "the exec plugin got the loader-only environment: $leaked"
ok "GnuTLS left uninitialised; the exec plugin gets the user's environment back"
informers=$(log_field unreach "Starting informers" informers)
if [ "${informers:-0}" -gt 0 ]; then
  start_t=$EPOCHREALTIME
  while lt "$(since "$start_t")" 3; do
    c=$(readyz unreach)
    [ "$c" = 500 ] || fail "unreachable server: /readyz is $c before the informers synced"
    sleep 0.2
  done
  ok "unreachable server: /readyz stays 500 while $informers informers cannot sync"
else
  [ "$(readyz unreach)" = 200 ] || fail "unreachable server, no informers: /readyz not 200"
  ok "unreachable server: no informers registered yet, so /readyz is 200 at once # (nothing to sync)"
fi
t0=$EPOCHREALTIME
kill -TERM "${PID[unreach]}"
finish unreach
rc=$RC
t=$(since "$t0")
[ "$rc" = 0 ] || fail "unreachable server: exit status $rc after SIGTERM"
lt "$t" 5 || fail "unreachable server: SIGTERM took ${t}s"
ok "unreachable server: SIGTERM exits 0 in ${t}s"

# ---- 2. leader election -----------------------------------------------------------

# scenario TAG LEASE RENEW RETRY (seconds)
scenario() {
  local tag=$1 lease=$2 renew=$3 retry=$4
  LEASE=provisio-e2e-$tag
  local le=(--leader-elect --leader-election-namespace="$ns" --leader-election-id="$LEASE"
    --leader-elect-lease-duration="${lease}s" --leader-elect-renew-deadline="${renew}s"
    --leader-elect-retry-period="${retry}s")
  local a=a$tag b=b$tag c=c$tag d=d$tag leader standby t0 t rc bound
  echo "# scenario $tag: lease ${lease}s, renew deadline ${renew}s, retry period ${retry}s"

  start "$a" "${le[@]}"
  start "$b" "${le[@]}"
  for x in "$a" "$b"; do
    eventually 20 is_code healthz "$x" 200 || fail "$x: /healthz never 200"
    eventually 60 is_code readyz "$x" 200 || fail "$x: /readyz never 200"
    eventually 10 has_identity "$x" || fail "$x: no startup line with an identity"
  done
  ok "$tag: both candidates serve /healthz and /readyz 200"

  one_leader() {
    local ma mb
    ma=$(master "$a")
    mb=$(master "$b")
    [ "$ma" = 1 ] && [ "$mb" = 0 ] && leader=$a && standby=$b && return 0
    [ "$ma" = 0 ] && [ "$mb" = 1 ] && leader=$b && standby=$a && return 0
    return 1
  }
  eventually "$((lease * 2 + 10))" one_leader || fail "$tag: never exactly one leader (master_status $(master "$a")/$(master "$b"))"
  eventually 5 holds "$leader" || fail "$tag: Lease holder '$(holder)' is not the leader $(identity "$leader")"
  ok "$tag: exactly one leader ($leader), the Lease names it, master_status 1/0"
  sleep "$(calc "$retry * 3")"
  one_leader && holds "$leader" || fail "$tag: leadership moved without a reason"
  ok "$tag: leadership stable over 3 retry periods"

  check_metrics "$a"
  check_metrics "$b"

  # Workers run on the leader only (when the binary has controllers): an
  # IPPool becomes Ready through the leader, the standby reconciles nothing.
  local controllers pool=""
  controllers=$(log_field "$a" "Starting informers" controllers)
  if [ "${controllers:-0}" -gt 0 ]; then
    pool=e2e-mgr-$tag-$$
    POOLS+=("$pool")
    printf 'apiVersion: provisio.dev/v1alpha1\nkind: IPPool\nmetadata:\n  name: %s\nspec:\n  cidr: 10.251.%d.0/24\n' \
      "$pool" "$((RANDOM % 250))" | k apply -f - >/dev/null || fail "$tag: create IPPool $pool"
    k wait --for=condition=Ready "ippool/$pool" --timeout=30s >/dev/null ||
      fail "$tag: IPPool $pool never Ready"
    eventually 5 reconciled "$leader" || fail "$tag: the leader reconciled nothing"
    [ "$(reconciles "$standby")" = 0 ] || fail "$tag: the standby reconciled $(reconciles "$standby") times"
    ok "$tag: only the leader reconciles ($(reconciles "$leader") reconciles, standby 0)"
  fi

  # kill -9 of the leader: the standby takes over once the lease expires.
  t0=$EPOCHREALTIME
  kill -9 "${PID[$leader]}"
  finish "$leader"
  rc=$RC
  [ "$rc" = 137 ] || fail "$tag: kill -9 gave status $rc"
  # lease + retry, plus 2 s for the standby's GET and PUT and the scrape
  # on a loaded 2-core machine running the sanitizer build.
  bound=$(calc "$lease + $retry + 2")
  eventually "$bound" is_master "$standby" 1 || fail "$tag: standby did not lead within ${bound}s of kill -9"
  t=$(since "$t0")
  holds "$standby" || fail "$tag: Lease holder '$(holder)' is not the new leader"
  figure "$tag failover after kill -9: ${t}s (lease ${lease}s + retry ${retry}s = $(calc "$lease + $retry")s)"
  ok "$tag: standby leads ${t}s after kill -9 of the leader (bound ${bound}s)"
  if [ -n "$pool" ]; then
    # Becoming leader re-enqueues everything cached.
    eventually 10 reconciled "$standby" || fail "$tag: the new leader reconciled nothing"
    ok "$tag: the new leader reconciles what it had cached"
  fi

  # SIGTERM of the new leader: exits 0 promptly and releases the Lease.
  t0=$EPOCHREALTIME
  kill -TERM "${PID[$standby]}"
  finish "$standby"
  rc=$RC
  t=$(since "$t0")
  local released=$EPOCHREALTIME
  [ "$rc" = 0 ] || fail "$tag: exit status $rc after SIGTERM"
  lt "$t" 5 || fail "$tag: SIGTERM took ${t}s"
  figure "$tag exit after SIGTERM: ${t}s"
  [ -z "$(holder)" ] && [ "$(lease_duration)" = 1 ] ||
    fail "$tag: Lease not released (holder '$(holder)', leaseDurationSeconds $(lease_duration))"
  ok "$tag: SIGTERM exits 0 in ${t}s and releases the Lease"

  # A fresh process leads at once.
  start "$c" "${le[@]}"
  local started=$EPOCHREALTIME
  eventually 10 is_master "$c" 1 || fail "$tag: a fresh process did not lead within 10s of the release"
  t=$(since "$started")
  holds "$c" || fail "$tag: Lease holder '$(holder)' is not $c"
  lt "$t" 5 || fail "$tag: a fresh process took ${t}s to lead after the release"
  figure "$tag fresh process leads ${t}s after its start ($(since "$released")s after the release, kubectl checks in between)"
  ok "$tag: a process started after the release leads in ${t}s"

  # Graceful failover to a running standby.
  start "$d" "${le[@]}"
  eventually 60 is_code readyz "$d" 200 || fail "$d: /readyz never 200"
  eventually 10 is_master "$d" 0 || fail "$d: not a standby"
  sleep "$(calc "$retry * 2")"
  figure "$tag idle RSS: standby $(rss_kib "$d") KiB, leader $(rss_kib "$c") KiB ($(basename "$PROVISIO_BINARY") as built)"
  t0=$EPOCHREALTIME
  kill -TERM "${PID[$c]}"
  bound=$(calc "$retry + 2")
  eventually "$bound" is_master "$d" 1 || fail "$tag: standby did not lead within ${bound}s of the leader's SIGTERM"
  t=$(since "$t0")
  finish "$c"
  rc=$RC
  [ "$rc" = 0 ] || fail "$tag: exit status $rc after SIGTERM"
  holds "$d" || fail "$tag: Lease holder '$(holder)' is not $d"
  figure "$tag graceful failover to a running standby: ${t}s"
  ok "$tag: running standby leads ${t}s after the leader's SIGTERM (bound ${bound}s)"

  if [ -n "$pool" ]; then
    k delete ippool "$pool" --timeout=30s >/dev/null || fail "$tag: delete IPPool $pool"
  fi

  # Someone else takes the Lease: the leader stops at its next renewal and
  # exits 1 ("leader election lost"), as controller-runtime does.
  t0=$EPOCHREALTIME
  k patch lease -n "$ns" "$LEASE" --type=merge -p '{"spec":{"holderIdentity":"intruder"}}' >/dev/null ||
    fail "$tag: patch the Lease"
  bound=$(calc "$renew + $retry + 2")
  exited() { ! alive "$d"; }
  eventually "$bound" exited || fail "$tag: the leader still runs ${bound}s after losing the Lease"
  t=$(since "$t0")
  finish "$d"
  rc=$RC
  [ "$rc" = 1 ] || fail "$tag: exit status $rc after losing the Lease (want 1)"
  grep -q '"msg":"leader election lost"' "$tmp/$d.log" || fail "$tag: no 'leader election lost' line"
  figure "$tag exit after the Lease was taken by another holder: ${t}s"
  ok "$tag: a leader that loses the Lease stops and exits 1 in ${t}s"
}

scenario short 4 3 1
if [ "${MANAGER_TEST_DEFAULTS:-1}" != 0 ]; then
  scenario default 15 10 2
fi

# ---- 3. logs ----------------------------------------------------------------------

key=$(k config view --raw --minify -o jsonpath='{.users[0].user.client-key-data}' 2>/dev/null | head -c 48 || true)
python3 - "$key" "$tmp"/*.log <<'EOF' || fail "log lines are not all JSON objects with level, ts, msg (or a secret leaked)"
import json, sys
key, paths = sys.argv[1], sys.argv[2:]
bad = 0
for path in paths:
    for i, line in enumerate(open(path, errors="replace"), 1):
        try:
            o = json.loads(line)
            good = isinstance(o, dict) and all(k in o for k in ("level", "ts", "msg"))
        except ValueError:
            good = False
        if not good or (key and key in line):
            bad += 1
            if bad <= 10:
                print("# %s:%d: %r" % (path, i, line[:200]))
sys.exit(1 if bad else 0)
EOF
ok "every log line is a JSON object with level, ts and msg; no client key in the logs"

echo "1..$n"
