# lib-bench.sh: what bench/run-ip-bench and bench/run-device-bench share
# (sourced, not run). The driver sets, before sourcing:
#   bench_name   its name, for messages ("run-ip-bench")
#   kind         bench_claims --kind (ip, device)
#   kind_title   the claims' kind for the report ("IPClaim", "DeviceClaim")
#   result_name  the results file's prefix (bench/results/<result_name>-<date>.md)
#   default_workers, default_light   BENCH_WORKERS and BENCH_LIGHT defaults
# and, after sourcing and bench_cluster, calls bench_light, bench_sweep and
# bench_report. Hooks it may define:
#   after_start          run once the operator is ready, before measuring
#   bench_cleanup_extra  run at exit, before a kube-local of our own goes down
#                        (processes of its own; objects in an outside cluster)
#   agent_requests       print "POST=n PUT=n PATCH=n DELETE=n GET=n" summed over
#                        the driver's node agents (as `requests` does for the
#                        operator): their writes during a claims run go to the
#                        floor too (PATCHes as --agent-patches)
#   after_pair N W LINE FLINE  run at the end of each claims run + floor pair
#                        with the two RESULT lines; bench_one's locals are
#                        visible (op_writes, writes, awrites, hwm, ...)
# Arrays it may fill: claim_args (more bench_claims flags, both sides),
# report_extra (markdown lines appended to the report). floor_desc, if set,
# replaces the report's sentence on what a floor chain writes.
#
# Environment (both drivers; defaults in parentheses):
#   BENCH_SIZES     claim counts                    ("1000 10000")
#   BENCH_WORKERS   --max-concurrent-reconciles values; "default" = the flag
#                   not given                       ($default_workers)
#   BENCH_THREADS   creating threads T, also the floor's (16)
#   BENCH_REPEAT    runs of each (N, workers) pair, one row each (1)
#   BENCH_LIGHT     claims created one at a time, each after the previous is
#                   Ready, by one thread, before the bulk runs: create->Ready
#                   at light load; 0 skips ($default_light)
#   BENCH_TIMEOUT   seconds to wait for one run's claims to be Ready (900)
#   BENCH_PERF      1: perf record the operator during each claims run and
#                   add its top functions to the results (0)
#   BENCH_PERF_GRAPH perf record's call-graph flags ("-g"; "--call-graph dwarf"
#                   names the callers of libc's functions)
#   BENCH_PERF_KEEP a directory to copy the perf data files into (for
#                   `perf report -g caller -i DIR/perf-<i>.data`; unset: none)
#   BENCH_METRICS_KEEP a directory to save the operator's /metrics text into
#                   at the end of each claims run (metrics-<i>.txt; unset: none)
#   BENCH_OUT       results file (bench/results/<result_name>-<date>.md)
#   OPERATOR_ARGS   extra operator flags, split on whitespace
#   OPERATOR        the operator binary (default BUILD_DIR/provisio)
#   BENCH_ROWS      also append one line of key=value figures per run to
#                   this file (bench/run-twin-bench reads them)
# shellcheck shell=bash
# shellcheck disable=SC2154 # the driver's variables

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-build-release}
[[ $build = /* ]] || build=$root/$build
provisio=${OPERATOR:-$build/provisio}
bench=$build/bench/bench_claims
sizes=${BENCH_SIZES:-1000 10000}
workers=${BENCH_WORKERS:-$default_workers}
threads=${BENCH_THREADS:-16}
repeat=${BENCH_REPEAT:-1}
light=${BENCH_LIGHT:-$default_light}
timeout=${BENCH_TIMEOUT:-900}
perf_on=${BENCH_PERF:-0}
stamp=$(date +%Y-%m-%d-%H%M)
out=${BENCH_OUT:-$root/bench/results/$result_name-$stamp.md}
run=$(date +%s | tail -c 6)$$
claim_args=(--kind "$kind")
report_extra=()

say() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }
note() { printf '    %s\n' "$*" >&2; }
die() {
  printf '%s: %s\n' "$bench_name" "$*" >&2
  exit 1
}

for f in "$provisio" "$bench" "$build/bench/bench_rss_floor"; do
  [ -x "$f" ] || die "$f missing: build it first (cmake -DCMAKE_BUILD_TYPE=Release, targets provisio bench_claims)"
done
[ -n "${OPERATOR:-}" ] || grep -qi 'CMAKE_BUILD_TYPE:STRING=Release' "$build/CMakeCache.txt" 2>/dev/null ||
  note "warning: $build is not a Release build"
grep -qi 'PROVISIO_SANITIZE:BOOL=ON' "$build/CMakeCache.txt" 2>/dev/null &&
  note "warning: $build has sanitizers on: figures will not mean much"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/$result_name-bench.XXXXXX")
kl_dir=
op_pid=
perf_pid=

cleanup() {
  set +e
  [ -n "$perf_pid" ] && kill -INT "$perf_pid" 2>/dev/null && wait "$perf_pid" 2>/dev/null
  if [ -n "$op_pid" ]; then
    kill -TERM "$op_pid" 2>/dev/null
    wait "$op_pid" 2>/dev/null
  fi
  if declare -F bench_cleanup_extra >/dev/null; then bench_cleanup_extra; fi
  [ -z "$kl_dir" ] || "$root/hack/kube-local" down "$kl_dir" >/dev/null 2>&1
  if [ -n "${BENCH_PERF_KEEP:-}" ] && compgen -G "$tmp/perf-*.data" >/dev/null; then
    mkdir -p "$BENCH_PERF_KEEP" && cp "$tmp"/perf-*.data "$BENCH_PERF_KEEP"/
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------
# Control plane

bench_cluster() {
  if [ -n "${KUBECONFIG:-}" ]; then
    say "Using the cluster of KUBECONFIG=$KUBECONFIG"
    kubectl=${KUBECTL:-kubectl}
  else
    kl_dir=$tmp/kl
    say "Starting a control plane (hack/kube-local) in $kl_dir"
    "$root/hack/kube-local" up "$kl_dir" >&2
    export KUBECONFIG=$kl_dir/kubeconfig
    kubectl=$kl_dir/bin/kubectl
  fi
  k apply --server-side --force-conflicts -f "$root/crds/" >/dev/null
  k wait --for=condition=Established --timeout=60s -f "$root/crds/" >/dev/null
  machine="$(nproc) cores, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), $(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r)"
  kube_version=$(k version -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])' 2>/dev/null || echo '?')
  commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')
  load_start=$(loadavg)
}
k() { "$kubectl" "$@"; }

# ---------------------------------------------------------------------------
# Measuring

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# cpu_s PID: utime+stime of the process in seconds (fields 14, 15 of stat).
cpu_s() {
  local pid=$1
  if [ -z "$pid" ] || [ ! -r "/proc/$pid/stat" ]; then
    echo 0
    return
  fi
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f\n", ($12 + $13) / hz }' "/proc/$pid/stat"
}
status_kib() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# pid of a kube-local component (etcd, kube-apiserver), when the cluster is
# one (also a KUBECONFIG given in a kube-local directory), else nothing.
component_pid() { cat "$(dirname "$KUBECONFIG")/run/$1.pid" 2>/dev/null || true; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
# perf_top DATA: the 25 functions with most samples (self time).
perf_top() {
  perf report -i "$1" --stdio --no-children --sort dso,symbol 2>/dev/null |
    grep -E '^ +[0-9.]+%' | head -25 || true
}

# requests METRICS_PORT: "POST=n PUT=n PATCH=n DELETE=n GET=n" from
# rest_client_requests_total, summed over codes and hosts.
requests() {
  curl -fsS --max-time 5 "http://127.0.0.1:$1/metrics" | awk '
    /^rest_client_requests_total\{/ {
      m = $0; sub(/.*method="/, "", m); sub(/".*/, "", m)
      n[m] += $NF
    }
    END { printf "POST=%d PUT=%d PATCH=%d DELETE=%d GET=%d LIST=%d WATCH=%d\n",
          n["POST"], n["PUT"], n["PATCH"], n["DELETE"], n["GET"], n["LIST"], n["WATCH"] }'
}
field() { tr ' ' '\n' <<<"$2" | awk -F= -v k="$1" '$1 == k {print $2}'; }
# refusals METRICS_PORT: the requests answered other than 2xx, by method and
# code ("PUT:409=12 PATCH:409=3"; code <error> is a transport failure), from
# rest_client_requests_total since the process started.
refusals() {
  curl -fsS --max-time 5 "http://127.0.0.1:$1/metrics" | awk '
    /^rest_client_requests_total\{/ {
      m = $0; sub(/.*method="/, "", m); sub(/".*/, "", m)
      c = $0; sub(/.*code="/, "", c); sub(/".*/, "", c)
      if (c !~ /^2/) n[m ":" c] += $NF
    }
    END { s = ""; for (k in n) s = s (s == "" ? "" : " ") k "=" n[k]; print (s == "" ? "none" : s) }'
}

# wait_ready PID LOG HEALTH_PORT WHAT: until /readyz answers, or die.
wait_ready() {
  local pid=$1 log=$2 hport=$3 what=$4 deadline=$((SECONDS + 60))
  until curl -fsS --max-time 2 "http://127.0.0.1:$hport/readyz" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || {
      tail -20 "$log" >&2
      die "$what exited (log above)"
    }
    ((SECONDS < deadline)) || {
      tail -20 "$log" >&2
      die "$what is not ready after 60 s"
    }
    sleep 0.2
  done
}

start_operator() { # WORKERS LOG
  local w=$1 log=$2 mport hport
  mport=$(free_port)
  hport=$(free_port)
  local args=(--kubeconfig="$KUBECONFIG" --metrics-bind-address="127.0.0.1:$mport"
    --health-probe-bind-address="127.0.0.1:$hport")
  [ "$w" = default ] || args+=(--max-concurrent-reconciles="$w")
  # shellcheck disable=SC2206
  args+=(${OPERATOR_ARGS:-})
  "$provisio" "${args[@]}" >"$log" 2>&1 &
  op_pid=$!
  op_metrics=$mport
  wait_ready "$op_pid" "$log" "$hport" "the operator"
  if declare -F after_start >/dev/null; then after_start; fi
}

stop_operator() {
  kill -TERM "$op_pid" 2>/dev/null || true
  local rc=0
  wait "$op_pid" || rc=$?
  [ "$rc" = 0 ] || note "operator exit status $rc"
  op_pid=
}

# result KEY LINE: a value of a RESULT line.
result() { tr ' ' '\n' <<<"$2" | awk -F= -v k="$1" '$1 == k {print $2}'; }
fmt() { awk -v v="$1" -v p="${2:-1}" 'BEGIN { printf "%.*f", p, v }'; }
# One line for the results: the RSS of a process linked like provisio after
# one TLS request to the API server (bench/bench_rss_floor), the floor under
# any peak RSS of the agent or the operator.
rss_floor_note() {
  local line hwm file
  line=$("$build/bench/bench_rss_floor" --kubeconfig "$KUBECONFIG" 2>&1) || {
    echo "- RSS floor: bench_rss_floor failed: $line"
    return 0
  }
  hwm=$(sed -n 's/.* hwm=\([0-9]*\).*/\1/p' <<<"$line")
  file=$(sed -n 's/.* file=\([0-9]*\).*/\1/p' <<<"$line")
  echo "- RSS floor (bench/bench_rss_floor: a process linked with provisio's shared libraries after one TLS GET /version to the API server with provisio's client): peak $(div "$hwm" 1024 1) MiB, of which $(div "$file" 1024 1) MiB file-backed pages of the libraries (\`$line\`)"
}

div() { awk -v a="$1" -v b="$2" -v p="${3:-2}" 'BEGIN { if (b == 0) print "-"; else printf "%.*f", p, a / b }'; }
sub_s() { awk -v a="$1" -v b="$2" -v p="${3:-2}" 'BEGIN { printf "%.*f", p, a - b }'; }

# release NAMESPACE: delete it while the operator runs, wait until it is
# gone (the operator releases what the claims hold and removes its
# finalizer); sets release_s to the seconds it took, or "timeout".
release() {
  local t0
  t0=$(date +%s.%N)
  k delete namespace "$1" --wait=false >/dev/null
  if k wait --for=delete "namespace/$1" --timeout=600s >/dev/null 2>&1; then
    release_s=$(sub_s "$(date +%s.%N)" "$t0" 1)
  else
    release_s="timeout"
    note "namespace $1 still there after 600 s"
  fi
}

# ---------------------------------------------------------------------------
# Runs

# bench_light POOL: BENCH_LIGHT claims one at a time, default flags.
light_line=
bench_light() {
  [ "$light" -gt 0 ] || return 0
  say "Light load: $light claims one at a time (default flags, load $(loadavg))"
  start_operator default "$tmp/operator-light.log"
  sleep 1
  light_load=$(loadavg)
  light_line=$("$bench" claims "${claim_args[@]}" -n "$light" -t 1 --serial --namespace "light-$run" \
    --pool "$1" --timeout "$timeout") || note "bench_claims claims --serial failed"
  light_load="$light_load / $(loadavg)"
  note "$light_line"
  release "light-$run"
  stop_operator
}

rows=()
declare -A best_run best_floor # "N workers" -> the shortest time of the repeats
pairs=()
details=()
profiles=()
i=0

# bench_one N WORKERS POOL: one claims run (POOL: what the claims name) and
# its floor; appends a row to rows and details.
bench_one() {
  local n=$1 w=$2 pool=$3
  i=$((i + 1))
  local ns=bench-$run-$i fns=floor-$run-$i
  say "N=$n, --max-concurrent-reconciles=$w (load $(loadavg))"

  start_operator "$w" "$tmp/operator-$i.log"
  sleep 1 # let the start-up resync of what exists settle
  local req0 cpu0 api0 etcd0 line brc req1 cpu1 api1 etcd1 req2 hwm rss cpu_total load0 load1
  local areq0="" areq1="" has_agents=""
  if declare -F agent_requests >/dev/null; then has_agents=1; fi
  [ -z "$has_agents" ] || areq0=$(agent_requests)
  req0=$(requests "$op_metrics")
  cpu0=$(cpu_s "$op_pid")
  api0=$(cpu_s "$(component_pid kube-apiserver)")
  etcd0=$(cpu_s "$(component_pid etcd)")
  load0=$(loadavg)
  if [ "$perf_on" = 1 ]; then
    perf record -F 499 ${BENCH_PERF_GRAPH:--g} -p "$op_pid" -o "$tmp/perf-$i.data" >/dev/null 2>"$tmp/perf-$i.err" &
    perf_pid=$!
  fi
  set +e
  line=$("$bench" claims "${claim_args[@]}" -n "$n" -t "$threads" --namespace "$ns" --pool "$pool" \
    --timeout "$timeout" --latencies "$tmp/lat-$i.txt")
  brc=$?
  set -e
  req1=$(requests "$op_metrics")
  if [ -n "${BENCH_METRICS_KEEP:-}" ]; then
    mkdir -p "$BENCH_METRICS_KEEP"
    curl -fsS --max-time 5 "http://127.0.0.1:$op_metrics/metrics" >"$BENCH_METRICS_KEEP/metrics-$i.txt" || true
  fi
  [ -z "$has_agents" ] || areq1=$(agent_requests)
  cpu1=$(cpu_s "$op_pid")
  api1=$(cpu_s "$(component_pid kube-apiserver)")
  etcd1=$(cpu_s "$(component_pid etcd)")
  load1=$(loadavg)
  if [ -n "$perf_pid" ]; then
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
    perf_pid=
    [ -s "$tmp/perf-$i.data" ] || note "perf record wrote nothing: $(tail -3 "$tmp/perf-$i.err")"
    profiles+=("### N=$n, workers=$w: operator, top functions (self)" '```'
      "$(perf_top "$tmp/perf-$i.data")" '```' '')
  fi
  sleep 3 # writes that come after the last Ready (pool status ...)
  req2=$(requests "$op_metrics")
  hwm=$(status_kib "$op_pid" VmHWM)
  rss=$(status_kib "$op_pid" VmRSS)
  cpu_total=$(cpu_s "$op_pid")
  [ "$brc" = 0 ] || note "bench_claims claims exited with $brc"
  [ -n "$line" ] || die "no result from bench_claims"
  note "$line"

  local writes=() v
  for v in POST PUT PATCH DELETE GET; do
    writes+=("$v=$(($(field "$v" "$req1") - $(field "$v" "$req0")))")
  done
  local late
  late=$((($(field POST "$req2") + $(field PUT "$req2") + $(field PATCH "$req2") + $(field DELETE "$req2")) - ($(field POST "$req1") + $(field PUT "$req1") + $(field PATCH "$req1") + $(field DELETE "$req1"))))
  d() { field "$1" "${writes[*]}"; }
  local op_writes=$(($(d POST) + $(d PUT) + $(d PATCH) + $(d DELETE)))
  note "operator requests during the run: ${writes[*]} (+$late writes in the 3 s after)"
  note "operator requests not answered 2xx since it started: $(refusals "$op_metrics")"
  # The node agents' requests (a driver with agent_requests): their PATCHes
  # are the floor's --agent-patches, their other writes join the operator's.
  local awrites=() agent_writes=0 floor_agent=()
  if [ -n "$has_agents" ]; then
    for v in POST PUT PATCH DELETE GET; do
      awrites+=("$v=$(($(field "$v" "$areq1") - $(field "$v" "$areq0")))")
    done
    ad() { field "$1" "${awrites[*]}"; }
    agent_writes=$(($(ad POST) + $(ad PUT) + $(ad PATCH) + $(ad DELETE)))
    floor_agent=(--agent-patches "$(ad PATCH)")
    note "agent requests during the run: ${awrites[*]}"
  else
    ad() { echo 0; }
  fi

  say "Deleting the $n claims (the operator releases them)"
  release "$ns"
  note "released in $release_s s"
  stop_operator

  say "Floor: $((n + op_writes + agent_writes)) writes from a plain writer, $threads threads (load $(loadavg))"
  local fapi0 fetcd0 fline frc fapi1 fetcd1 fload0
  fload0=$(loadavg)
  fapi0=$(cpu_s "$(component_pid kube-apiserver)")
  fetcd0=$(cpu_s "$(component_pid etcd)")
  set +e
  fline=$("$bench" floor "${claim_args[@]}" -n "$n" -t "$threads" --namespace "$fns" --pool "floor-$run-$i" \
    --posts "$(($(d POST) + $(ad POST)))" --patches "$(d PATCH)" --puts "$(($(d PUT) + $(ad PUT)))" \
    --deletes "$(($(d DELETE) + $(ad DELETE)))" "${floor_agent[@]}" --latencies "$tmp/floor-lat-$i.txt")
  frc=$?
  set -e
  fapi1=$(cpu_s "$(component_pid kube-apiserver)")
  fetcd1=$(cpu_s "$(component_pid etcd)")
  [ "$frc" = 0 ] || note "bench_claims floor exited with $frc"
  note "$fline"
  "$bench" cleanup "${claim_args[@]}" --namespace "$fns" --pool "floor-$run-$i" --prefix c --timeout 600 >/dev/null || true
  k delete namespace "$fns" --wait=false >/dev/null 2>&1 || true
  k wait --for=delete "namespace/$fns" --timeout=600s >/dev/null 2>&1 || note "namespace $fns still there"

  local wall fwall key
  wall=$(result wall_s "$line")
  fwall=$(result wall_s "$fline")
  key="$n $w"
  if [ -z "${best_run[$key]:-}" ]; then
    pairs+=("$key")
    best_run[$key]=$wall
    best_floor[$key]=$fwall
  fi
  best_run[$key]=$(awk -v a="${best_run[$key]}" -v b="$wall" 'BEGIN { print (b < a ? b : a) }')
  best_floor[$key]=$(awk -v a="${best_floor[$key]}" -v b="$fwall" 'BEGIN { print (b < a ? b : a) }')
  if [ -n "${BENCH_ROWS:-}" ]; then
    echo "operator=$(basename "$provisio") n=$n workers=$w ready=$(result ready "$line") rate=$(result rate "$line") p50_ms=$(result p50_ms "$line") p99_ms=$(result p99_ms "$line") wall_s=$wall floor_s=$fwall hwm_kib=$hwm cpu_s=$(sub_s "$cpu1" "$cpu0") cpu_total_s=$cpu_total writes=$op_writes post=$(d POST) patch=$(d PATCH) put=$(d PUT) delete=$(d DELETE) get=$(d GET) late=$late release_s=$release_s api_cpu_s=$(sub_s "$api1" "$api0" 1) etcd_cpu_s=$(sub_s "$etcd1" "$etcd0" 1)" >>"$BENCH_ROWS"
  fi
  rows+=("| $(printf "%'d" "$n") | $w | $(fmt "$(result rate "$line")" 0) | $(fmt "$(result p50_ms "$line")") | $(fmt "$(result p99_ms "$line")") | $(div "$hwm" 1024 1) | $(sub_s "$cpu1" "$cpu0") | $(fmt "$wall" 2) | $(fmt "$fwall" 2) | $(div "$wall" "$fwall") | $load0 / $load1 / $fload0 |")
  details+=("| $(printf "%'d" "$n") | $w | $(result ready "$line")/$n | $(div "$op_writes" "$n") ($(d POST) POST, $(d PATCH) PATCH, $(d PUT) PUT, $(d DELETE) DELETE) | $(div "$(d GET)" "$n") | $late | $(result post_p50_ms "$line") / $(result post_p99_ms "$line") | $(result events_per_claim "$line") | $(fmt "$(result rate "$fline")" 0) | $(result p50_ms "$fline") / $(result p99_ms "$fline") | $(sub_s "$api1" "$api0" 1) / $(sub_s "$fapi1" "$fapi0" 1) | $(sub_s "$etcd1" "$etcd0" 1) / $(sub_s "$fetcd1" "$fetcd0" 1) | $(div "$rss" 1024 1) | $cpu_total | $release_s |")
  if declare -F after_pair >/dev/null; then after_pair "$n" "$w" "$line" "$fline"; fi
  if grep -q '"level":"error"' "$tmp/operator-$i.log"; then
    note "operator logged $(grep -c '"level":"error"' "$tmp/operator-$i.log") error lines, first:"
    grep -m1 '"level":"error"' "$tmp/operator-$i.log" | cut -c1-400 >&2
  fi
}

# bench_sweep POOL: every size, every worker count, BENCH_REPEAT times.
bench_sweep() {
  local n w _rep
  for n in $sizes; do
    for w in $workers; do
      for _rep in $(seq "$repeat"); do
        bench_one "$n" "$w" "$1"
      done
    done
  done
  load_end=$(loadavg)
}

# ---------------------------------------------------------------------------
# Report

# bench_report TARGETS LIGHT_TARGET: the markdown report to $out and stdout.
bench_report() {
  local targets=$1 light_target=$2
  mkdir -p "$(dirname "$out")"
  {
    echo "# $kind_title benchmark, $(date -u +'%Y-%m-%d %H:%M UTC')"
    echo
    echo "- machine: $machine; load average $load_start at the start, $load_end at the end (shared with other work)"
    echo "- API server: kube-apiserver $kube_version$([ -n "$(component_pid kube-apiserver)" ] && echo ' (hack/kube-local: etcd on loopback, --unsafe-no-fsync)')"
    echo "- operator: $provisio (commit $commit), default flags but ports and --max-concurrent-reconciles${OPERATOR_ARGS:+, $OPERATOR_ARGS}"
    echo "- T = $threads creating threads sharing one kc_client; the floor runs at the same T"
    echo
    echo "| N | workers | claims/s | p50 ms | p99 ms | operator peak RSS MiB | operator CPU s | time s | floor s | ratio | load avg: run start / run end / floor start |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    printf '%s\n' "${rows[@]}"
    echo
    echo "Targets: $targets."
    if [ -n "$light_line" ]; then
      echo
      echo "Light load (one claim at a time, each created after the previous one is Ready; default flags; load $light_load): $(result ready "$light_line") claims, create->Ready p50 $(result p50_ms "$light_line") ms, p99 $(result p99_ms "$light_line") ms, max $(result max_ms "$light_line") ms (claim POST alone: p50 $(result post_p50_ms "$light_line") ms, p99 $(result post_p99_ms "$light_line") ms). DESIGN.md target: $light_target."
    fi
    if [ "$repeat" -gt 1 ]; then
      echo
      echo "Best of $repeat (the shortest time of each side: the machine is shared, and the run least disturbed is the nearest to what the code can do):"
      echo
      echo "| N | workers | best time s | best floor s | ratio |"
      echo "|---:|---:|---:|---:|---:|"
      local key bn bw
      for key in "${pairs[@]}"; do
        read -r bn bw <<<"$key"
        echo "| $(printf "%'d" "$bn") | $bw | $(fmt "${best_run[$key]}" 2) | $(fmt "${best_floor[$key]}" 2) | $(div "${best_run[$key]}" "${best_floor[$key]}") |"
      done
    fi
    echo
    echo "- time: first claim POST sent to last Ready=True seen on the watch; p50/p99: each claim's POST sent to its first Ready=True watch event"
    local fdesc="per claim, one after another, the claim POST and the operator's writes (its rest_client_requests_total by verb over the run, spread evenly): 1st POST a Reservation, more POSTs Events, PATCHes a merge patch carrying resourceVersion, PUTs the claim's status (the last with Ready=True, any before it Ready=False: each a change), DELETEs the Reservation; no operator running; the same observer watch of the namespace's ${kind_title}s as in the claims run"
    [ -z "${floor_desc:-}" ] || fdesc=$floor_desc
    echo "- floor: $fdesc"
    echo "- ratio: time / floor s. Operator CPU s: utime+stime during the claims run (the whole process life in the second table); peak RSS: VmHWM of the process"
    echo
    echo "| N | workers | Ready | operator writes/claim | operator GETs/claim | writes after last Ready | claim POST p50/p99 ms | watch events/claim | floor chains/s | floor chain p50/p99 ms | apiserver CPU s run/floor | etcd CPU s run/floor | operator RSS at end MiB | operator CPU s total | release s |"
    echo "|---:|---:|---:|---|---:|---:|---|---:|---:|---|---|---|---:|---:|---:|"
    printf '%s\n' "${details[@]}"
    if [ "${#report_extra[@]}" -gt 0 ]; then
      echo
      printf '%s\n' "${report_extra[@]}"
    fi
    if [ "${#profiles[@]}" -gt 0 ]; then
      echo
      echo "## Profiles (perf record -F 499 -g, operator process)"
      echo
      printf '%s\n' "${profiles[@]}"
    fi
  } >"$out"

  say "Results ($out)"
  cat "$out"
}
