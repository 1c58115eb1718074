# shellcheck shell=bash
# tests/e2e/lib.sh - helpers shared by the end-to-end shell tests.
#
# Source it from a test after `set -euo pipefail`:
#
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   e2e_init ip-incluster          # $E2E_TMP, EXIT trap, TAP counters
#   e2e_test "pool and claims become Ready" test_ready
#   ...
#   e2e_done                       # plan line, exit status
#
# What it gives:
#   - a scratch directory $E2E_TMP, removed at exit when every test passed
#     and kept (its path printed) when one failed, so the logs can be read;
#   - background processes (the operator, replicas of it) started with
#     e2e_bg_start from the main shell or from a test's subshell; their pid
#     and exit status are kept in files, so a test can kill -9 one and a
#     later test can still ask how it ended; every one still running is
#     stopped at exit (SIGTERM, then SIGKILL);
#   - TAP output: e2e_test runs one test function in a subshell with `set -e`
#     and prints `ok N - name` / `not ok N - name`; on failure the tail of
#     every background log is printed as diagnostics;
#   - polling (e2e_wait_for), free loopback ports, timestamps.
#
# Every helper is a function with the e2e_ prefix; variables are E2E_*.
# Only bash, coreutils and python3 are needed (no jq).

# ---- setup and teardown ------------------------------------------------------

# e2e_init NAME: make $E2E_TMP, install the EXIT trap, reset the TAP counters.
e2e_init() {
  E2E_NAME=$1
  E2E_TMP=$(mktemp -d "${TMPDIR:-/tmp}/e2e-${E2E_NAME}.XXXXXX")
  E2E_BG_DIR=$E2E_TMP/bg
  mkdir -p "$E2E_BG_DIR"
  E2E_N=0
  E2E_FAILED=0
  E2E_CLEANUPS=()
  trap e2e__exit EXIT
}

# e2e_on_exit CMD...: run CMD at exit, after the background processes were
# stopped; the last registered runs first. Errors and output are ignored.
e2e_on_exit() {
  local q
  printf -v q '%q ' "$@"
  E2E_CLEANUPS+=("$q")
}

e2e__exit() {
  local rc=$? i
  set +e
  e2e_bg_stop_all
  for ((i = ${#E2E_CLEANUPS[@]} - 1; i >= 0; i--)); do
    eval "${E2E_CLEANUPS[i]}" >/dev/null 2>&1
  done
  if ! e2e_no_sanitizer_reports; then
    ((rc != 0)) || rc=1
  fi
  if ((rc == 0 && E2E_FAILED == 0)) && [ -z "${E2E_KEEP:-}" ]; then
    rm -rf "$E2E_TMP"
  else
    echo "# logs and scratch files kept in $E2E_TMP"
  fi
  # exit, not return: the status of an EXIT trap's return is ignored, and a
  # sanitizer report found above must change the script's status.
  exit "$rc"
}

# e2e_no_sanitizer_reports: search the log of every background process for
# a sanitizer report (the operator and the CLI are sanitizer builds under
# make test); print each found as "not ok" diagnostics and return 1. Called
# at exit, before the logs of a passing test are removed, so no report is
# lost with them (tests/e2e/sanitized also fails the test on the printed
# lines).
e2e_no_sanitizer_reports() {
  local n log logs=()
  for n in $(e2e_bg_names); do
    log=$(e2e_bg_log "$n")
    [ -s "$log" ] && logs+=("$log")
  done
  ((${#logs[@]})) || return 0
  "${BASH_SOURCE[0]%/*}/scan-sanitizer-reports" "${logs[@]}"
}

# e2e_require_env VAR...: bail out unless every VAR is set and non-empty.
e2e_require_env() {
  local v
  for v in "$@"; do
    [ -n "${!v:-}" ] || e2e_bail "$v must be set (see the header of $0)"
  done
}

# e2e_require_cmd CMD...: bail out unless every CMD is found.
e2e_require_cmd() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || e2e_bail "$c not found in PATH"
  done
}

# ---- TAP ---------------------------------------------------------------------

# e2e_diag MSG...: one TAP diagnostic line per argument, on stdout.
e2e_diag() {
  local line
  for line in "$@"; do
    printf '# %s\n' "$line"
  done
}

# e2e_fail MSG...: print MSG as diagnostics (stderr) and return 1; under the
# `set -e` of e2e_test this ends the current test.
e2e_fail() {
  printf '#   %s\n' "$@" >&2
  return 1
}

# e2e_bail MSG: TAP "Bail out!" and exit 1 (the EXIT trap cleans up).
e2e_bail() {
  echo "Bail out! $*"
  exit 1
}

# e2e_test NAME FUNC [ARGS...]: run FUNC ARGS in a subshell with `set -e`;
# print ok/not ok with the time it took. Always returns 0 (so a failed test
# does not end the script under `set -e`); e2e_last_ok tells whether it
# passed, for a caller whose later tests depend on this one:
#   e2e_test "operator leads" test_leads
#   e2e_last_ok || e2e_bail "no leader"
e2e_test() {
  local name=$1 rc start
  shift
  E2E_N=$((E2E_N + 1))
  start=$(e2e_now)
  touch "$E2E_BG_DIR/.test-start"
  set +e
  (
    set -e
    "$@"
  )
  rc=$?
  set -e
  local took
  took=$(e2e_since "$start")
  if ((rc == 0)); then
    echo "ok $E2E_N - $name (${took} s)"
  else
    echo "not ok $E2E_N - $name (${took} s)"
    E2E_FAILED=$((E2E_FAILED + 1))
    e2e_dump_logs 40 "$E2E_BG_DIR/.test-start"
  fi
  E2E_LAST_RC=$rc
  return 0
}

# e2e_last_ok: exit 0 when the last e2e_test passed.
e2e_last_ok() {
  ((${E2E_LAST_RC:-1} == 0))
}

# e2e_done: print the plan line and exit 1 if any test failed, else 0.
e2e_done() {
  echo "1..$E2E_N"
  if ((E2E_FAILED)); then
    echo "# $E2E_FAILED of $E2E_N failed"
    exit 1
  fi
  exit 0
}

# ---- time and polling --------------------------------------------------------

# e2e_now: seconds since the epoch with milliseconds ("1700000000.123").
e2e_now() {
  local t
  t=$(date +%s%N)
  printf '%d.%03d\n' "$((t / 1000000000))" "$((t / 1000000 % 1000))"
}

# e2e_since START: seconds elapsed since START (an e2e_now value), 0.1 s.
e2e_since() {
  python3 -c 'import sys, time; print("%.1f" % (time.time() - float(sys.argv[1])))' "$1"
}

# e2e_wait_for LIMIT DESCRIPTION CMD...: run CMD every 0.2 s until it exits
# 0; after LIMIT seconds fail (e2e_fail) with DESCRIPTION and the last output
# of CMD (its stdout and stderr), so a condition written as a small checker
# that prints why it is not met yet explains the timeout by itself.
e2e_wait_for() {
  local limit=$1 what=$2 out deadline start
  shift 2
  start=$(date +%s)
  deadline=$((start + limit))
  while :; do
    if out=$("$@" 2>&1); then
      # Long waits are where a test's time goes: say which.
      (($(date +%s) - start < 10)) || e2e_diag "waited $(($(date +%s) - start)) s: $what"
      return 0
    fi
    if (($(date +%s) >= deadline)); then
      e2e_fail "not within ${limit} s: $what" "last output: ${out:0:2000}"
      return 1
    fi
    sleep 0.2
  done
}

# e2e_free_port: print a TCP port that is free on 127.0.0.1 right now.
e2e_free_port() {
  python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# e2e_http_get URL: print the body of a plain HTTP GET (the operator's
# metrics and probe servers); non-zero status when unreachable or not 2xx.
e2e_http_get() {
  python3 -c 'import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
        sys.stdout.write(r.read().decode())
except Exception as e:
    sys.exit("GET %s: %s" % (sys.argv[1], e))' "$1"
}

# ---- background processes ----------------------------------------------------
#
# For each NAME, $E2E_BG_DIR holds NAME.pid (the command's own pid, so kill
# -9 reaches it and not a wrapper), NAME.log (the log path) and, once the
# command ended, NAME.rc (its exit status, 128+N when killed by signal N).

# e2e_bg_start NAME LOG CMD...: start CMD in the background with stdout and
# stderr appended to LOG. NAME must not be running already (a NAME that ended
# may be started again: the log is appended to). Works from a subshell.
e2e_bg_start() {
  local name=$1 log=$2 d=$E2E_BG_DIR
  shift 2
  if e2e_bg_alive "$name"; then
    e2e_fail "e2e_bg_start: $name is already running"
    return 1
  fi
  rm -f "$d/$name.pid" "$d/$name.rc"
  printf '%s\n' "$log" >"$d/$name.log"
  (
    trap - EXIT
    "$@" >>"$log" 2>&1 </dev/null &
    echo $! >"$d/$name.pid.tmp"
    mv "$d/$name.pid.tmp" "$d/$name.pid"
    rc=0
    wait $! || rc=$?
    echo "$rc" >"$d/$name.rc"
  ) >/dev/null 2>&1 &
  local i
  for ((i = 0; i < 100; i++)); do
    [ -s "$d/$name.pid" ] && return 0
    sleep 0.05
  done
  e2e_fail "e2e_bg_start: $name did not start"
}

# e2e_bg_pid NAME: print the pid of NAME's command.
e2e_bg_pid() {
  cat "$E2E_BG_DIR/$1.pid" 2>/dev/null
}

# e2e_bg_log NAME: print the path of NAME's log.
e2e_bg_log() {
  cat "$E2E_BG_DIR/$1.log" 2>/dev/null
}

# e2e_bg_alive NAME: exit 0 while NAME's command runs.
e2e_bg_alive() {
  [ -s "$E2E_BG_DIR/$1.pid" ] && [ ! -e "$E2E_BG_DIR/$1.rc" ]
}

# e2e_bg_status NAME: print NAME's exit status; non-zero while it runs.
e2e_bg_status() {
  [ -s "$E2E_BG_DIR/$1.rc" ] && cat "$E2E_BG_DIR/$1.rc"
}

# e2e_bg_wait NAME LIMIT: wait up to LIMIT seconds for NAME to end; print
# its exit status (non-zero return on timeout).
e2e_bg_wait() {
  local name=$1 limit=$2 deadline
  deadline=$(($(date +%s) + limit))
  while e2e_bg_alive "$name"; do
    (($(date +%s) < deadline)) || return 1
    sleep 0.1
  done
  local i
  for ((i = 0; i < 50; i++)); do
    [ -s "$E2E_BG_DIR/$name.rc" ] && break
    sleep 0.02
  done
  e2e_bg_status "$name"
}

# e2e_bg_stop NAME [SIGNAL] [LIMIT]: send SIGNAL (TERM) to NAME, wait up to
# LIMIT (15) seconds, then SIGKILL. Prints the exit status. A NAME that has
# already ended just prints its status.
e2e_bg_stop() {
  local name=$1 sig=${2:-TERM} limit=${3:-15} pid
  if e2e_bg_alive "$name"; then
    pid=$(e2e_bg_pid "$name")
    kill -s "$sig" "$pid" 2>/dev/null || true
    if ! e2e_bg_wait "$name" "$limit" >/dev/null; then
      kill -s KILL "$pid" 2>/dev/null || true
      e2e_bg_wait "$name" 10 >/dev/null || true
    fi
  fi
  e2e_bg_status "$name"
}

# e2e_bg_names: print the NAME of every process ever started, one a line.
e2e_bg_names() {
  local f
  for f in "$E2E_BG_DIR"/*.log; do
    [ -e "$f" ] || continue
    f=${f##*/}
    echo "${f%.log}"
  done
}

# e2e_bg_stop_all: stop everything still running (TERM, 12 s, KILL).
e2e_bg_stop_all() {
  local n pid alive=()
  for n in $(e2e_bg_names); do
    if e2e_bg_alive "$n"; then
      pid=$(e2e_bg_pid "$n")
      kill -s TERM "$pid" 2>/dev/null && alive+=("$n")
    fi
  done
  # Signal 0: they have their TERM already; a second one would make an
  # operator skip its drain ("received a second signal").
  for n in "${alive[@]}"; do
    e2e_bg_stop "$n" 0 12 >/dev/null || true
  done
}

# e2e_dump_logs [LINES] [SINCE]: the last LINES (40) lines of the log of
# every background process, as TAP diagnostics on stdout; with SINCE (a
# file), only of those still running or that ended after SINCE's mtime.
e2e_dump_logs() {
  local lines=${1:-40} since=${2:-} n log
  for n in $(e2e_bg_names); do
    log=$(e2e_bg_log "$n")
    [ -s "$log" ] || continue
    if [ -n "$since" ] && ! e2e_bg_alive "$n" && ! [ "$E2E_BG_DIR/$n.rc" -nt "$since" ]; then
      continue
    fi
    echo "# ---- last $lines lines of $n ($log)"
    tail -n "$lines" "$log" | sed 's/^/#   /'
  done
}

# ---- pods --------------------------------------------------------------------
#
# kube-local's nodes have no kubelet: a pod that kube-scheduler binds to one
# never runs, and a graceful delete waits for a kubelet that never confirms
# it (the pod stays Terminating, and so does its namespace). Tests remove
# their pods with these instead.

# e2e_force_delete_pods NS [SELECTOR]: delete the pods of NS (those matching
# the label SELECTOR, or all) at once, without waiting for a kubelet.
e2e_force_delete_pods() {
  local ns=$1 sel=(--all)
  [ -z "${2:-}" ] || sel=(-l "$2")
  "${KUBECTL:-kubectl}" delete pods -n "$ns" "${sel[@]}" --grace-period=0 --force \
    --ignore-not-found --wait=false >/dev/null 2>&1 || true
}

# e2e_delete_namespace NS: force-delete its pods, then delete NS (not waiting).
e2e_delete_namespace() {
  e2e_force_delete_pods "$1"
  "${KUBECTL:-kubectl}" delete namespace "$1" --ignore-not-found --wait=false >/dev/null 2>&1 || true
}
