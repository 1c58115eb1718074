#!/usr/bin/env bash
# End-to-end test of `provisio get` and `provisio watch` (src/manager/cli.c)
# against the real control plane: what they print is compared with what
# kubectl says the API server holds.
#
# - get of a namespaced list, by name, with -l and --field-selector, through
#   the short name and version/resource forms;
# - get of a cluster-scoped resource (nodes; -n ignored) and of a grouped one
#   across namespaces (leases.coordination.k8s.io -A);
# - a missing object and an unknown resource type: exit 1, kubectl's words;
# - watch: ADDED, MODIFIED, DELETED of a ConfigMap in order; SIGINT ends it
#   promptly with exit 0; --timeout ends it with exit 0; watch by name.
#
# Environment (set by the ctest fixture, see tests/CMakeLists.txt):
#   KUBECONFIG       admin kubeconfig of the control plane
#   PATH             with the control plane's bin/ (kubectl) first
#   PROVISIO_BINARY  the built provisio
# Run by hand:
#   hack/kube-local up /tmp/kl-cli
#   KUBECONFIG=/tmp/kl-cli/kubeconfig PATH=/tmp/kl-cli/bin:$PATH \
#     PROVISIO_BINARY=build/provisio bash tests/e2e/cli_test.sh
#
# Output is TAP; the exit status is non-zero if any test failed.
set -euo pipefail

: "${KUBECONFIG:?KUBECONFIG must name the kube-local admin kubeconfig}"
: "${PROVISIO_BINARY:?PROVISIO_BINARY must name the built provisio}"
KUBECTL=${KUBECTL:-kubectl}
command -v "$KUBECTL" >/dev/null || {
  echo "Bail out! kubectl not found (PATH should start with the kube-local bin/)"
  exit 1
}
[ -x "$PROVISIO_BINARY" ] || {
  echo "Bail out! $PROVISIO_BINARY is not an executable"
  exit 1
}

suffix=$(date +%s)-$$
ns=e2e-cli-$suffix
tmp=$(mktemp -d)

k() { "$KUBECTL" "$@"; }
p() { "$PROVISIO_BINARY" "$@"; }

cleanup() {
  set +e
  k delete namespace "$ns" --wait=false >/dev/null 2>&1
  # Sanitizer reports of the processes it started, before their logs go
  # (tests/e2e/sanitized fails the test on the printed lines).
  "${BASH_SOURCE[0]%/*}/scan-sanitizer-reports" "$tmp"
  rm -rf "$tmp"
}
trap cleanup EXIT

# fail MESSAGE...: end the current test (tests run under set -e in a subshell).
fail() {
  printf '#   %s\n' "$@" >&2
  return 1
}

# eventually SECONDS DESCRIPTION CMD...: poll CMD until it succeeds.
eventually() {
  local limit=$1 what=$2 deadline
  shift 2
  deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "not within ${limit} s: $what"
    sleep 0.5
  done
}

# JSON lines on stdin -> one line per object: "namespace/name" (or "name"
# when cluster-scoped), sorted. Fails when a line is not a JSON object with
# apiVersion want_api_version and kind want_kind.
# Usage: json_names WANT_API_VERSION WANT_KIND
json_names() {
  python3 -c '
import json, sys
want_api_version, want_kind = sys.argv[1], sys.argv[2]
names = []
for n, line in enumerate(sys.stdin, 1):
    obj = json.loads(line)
    if obj.get("apiVersion") != want_api_version or obj.get("kind") != want_kind:
        sys.exit("line %d: apiVersion %r kind %r, want %r %r" % (
            n, obj.get("apiVersion"), obj.get("kind"), want_api_version, want_kind))
    meta = obj["metadata"]
    names.append(meta["namespace"] + "/" + meta["name"] if "namespace" in meta else meta["name"])
print("\n".join(sorted(names)))
' "$@"
}

# kubectl's view of the same: "namespace/name" or "name", sorted.
kubectl_names() {
  k get "$@" -o jsonpath='{range .items[*]}{.metadata.namespace}{"/"}{.metadata.name}{"\n"}{end}' |
    sed 's#^/##' | sort
}

same_names() {
  local what=$1 ours=$2 theirs=$3
  [ "$ours" = "$theirs" ] || fail "$what: provisio and kubectl disagree" \
    "provisio: $(tr '\n' ' ' <<<"$ours")" "kubectl:  $(tr '\n' ' ' <<<"$theirs")"
}

setup_namespace() {
  k create namespace "$ns" >/dev/null
  k create configmap one -n "$ns" --from-literal=k=v1 >/dev/null
  k create configmap two -n "$ns" --from-literal=k=v2 >/dev/null
  k create configmap three -n "$ns" --from-literal=k=v3 >/dev/null
  k label configmap one two -n "$ns" app=web >/dev/null
  k label configmap three -n "$ns" app=db >/dev/null
  # The root-CA publisher adds kube-root-ca.crt on its own: wait for it so
  # the lists below cannot differ by it. 180 s: when an earlier test has
  # restarted the API server, kube-controller-manager's watches were refused
  # (403 until RBAC is loaded) and its reflectors back off up to ~30 s each
  # before the publisher sees new namespaces again (CI saw > 60 s).
  eventually 180 "kube-root-ca.crt published in $ns" k get configmap kube-root-ca.crt -n "$ns"
}

# ---------------------------------------------------------------------------

test_get_lists_a_namespace_like_kubectl() {
  local ours
  ours=$(p get configmaps -n "$ns" | json_names v1 ConfigMap)
  same_names "configmaps in $ns" "$ours" "$(kubectl_names configmaps -n "$ns")"
  grep -qx "$ns/one" <<<"$ours" || fail "configmap one missing: $ours"
  [ "$(wc -l <<<"$ours")" -eq 4 ] || fail "want 4 configmaps, got: $ours"
  # Flags before the resource, the short name and the version/resource form.
  same_names "cm via -n first" "$(p get -n "$ns" cm | json_names v1 ConfigMap)" "$ours"
  same_names "v1/configmaps" "$(p get v1/configmaps --namespace="$ns" | json_names v1 ConfigMap)" \
    "$ours"
}

test_get_by_name_prints_the_object() {
  local out
  out=$(p get configmap one -n "$ns")
  [ "$(wc -l <<<"$out")" -eq 1 ] || fail "want one line, got:" "$out"
  [ "$(json_names v1 ConfigMap <<<"$out")" = "$ns/one" ] || fail "not configmap one:" "$out"
  python3 -c 'import json,sys; o=json.loads(sys.stdin.read()); assert o["data"] == {"k": "v1"}, o["data"]' \
    <<<"$out" || fail "data of one is not k=v1"
  [ "$(p get cm one -n "$ns" | python3 -c 'import json,sys; print(json.load(sys.stdin)["metadata"]["uid"])')" = \
    "$(k get cm one -n "$ns" -o jsonpath='{.metadata.uid}')" ] || fail "uid differs from kubectl's"
}

test_get_with_selectors() {
  same_names "-l app=web" "$(p get configmaps -n "$ns" -l app=web | json_names v1 ConfigMap)" \
    "$(printf '%s\n' "$ns/one" "$ns/two")"
  same_names "--selector app!=web" \
    "$(p get configmaps -n "$ns" --selector 'app!=web' | json_names v1 ConfigMap)" \
    "$(kubectl_names configmaps -n "$ns" -l 'app!=web')"
  same_names "--field-selector" \
    "$(p get configmaps -n "$ns" --field-selector metadata.name=three | json_names v1 ConfigMap)" \
    "$ns/three"
}

test_get_cluster_scoped_nodes_ignores_namespace() {
  local ours
  ours=$(p get nodes | json_names v1 Node)
  same_names "nodes" "$ours" "$(kubectl_names nodes)"
  grep -qx node-a <<<"$ours" || fail "node-a missing: $ours"
  same_names "nodes -n $ns" "$(p get nodes -n "$ns" | json_names v1 Node)" "$ours"
  [ "$(p get node node-b -n "$ns" | json_names v1 Node)" = node-b ] || fail "get node node-b"
}

leases_agree() {
  same_names "leases -A" \
    "$(p get leases.coordination.k8s.io -A | json_names coordination.k8s.io/v1 Lease)" \
    "$(kubectl_names leases.coordination.k8s.io -A)"
}

test_get_grouped_resource_across_namespaces() {
  k apply -n "$ns" -f - >/dev/null <<EOF
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata:
  name: cli-lease
spec:
  holderIdentity: e2e
  leaseDurationSeconds: 15
EOF
  grep -qx "$ns/cli-lease" <<<"$(p get leases.coordination.k8s.io -A |
    json_names coordination.k8s.io/v1 Lease)" || fail "$ns/cli-lease not listed with -A"
  # Other leases may come and go (API server identity): agree within a few tries.
  eventually 15 "provisio and kubectl list the same leases" leases_agree
  [ "$(p get coordination.k8s.io/v1/leases cli-lease -n "$ns" |
    json_names coordination.k8s.io/v1 Lease)" = "$ns/cli-lease" ] ||
    fail "group/version/resource form by name"
}

test_missing_object_and_type_exit_1_with_kubectl_messages() {
  local rc=0
  p get configmap nope -n "$ns" >"$tmp/out" 2>"$tmp/err" || rc=$?
  [ "$rc" -eq 1 ] || fail "exit $rc for a missing configmap, want 1"
  [ ! -s "$tmp/out" ] || fail "stdout not empty: $(cat "$tmp/out")"
  [ "$(cat "$tmp/err")" = "Error from server (NotFound): configmaps \"nope\" not found" ] ||
    fail "stderr: $(cat "$tmp/err")"

  rc=0
  p get nosuchthings -n "$ns" >"$tmp/out" 2>"$tmp/err" || rc=$?
  [ "$rc" -eq 1 ] || fail "exit $rc for an unknown resource type, want 1"
  grep -q "the server doesn't have a resource type \"nosuchthings\"" "$tmp/err" ||
    fail "stderr: $(cat "$tmp/err")"

  rc=0
  p get configmaps one -A >"$tmp/out" 2>"$tmp/err" || rc=$?
  [ "$rc" -eq 1 ] || fail "exit $rc for a name with -A, want 1"
  grep -q "across all namespaces" "$tmp/err" || fail "stderr: $(cat "$tmp/err")"
}

test_help_and_version() {
  p get --help | grep -q "provisio get RESOURCE \[NAME\]" || fail "get --help"
  p watch --help | grep -q -- "--timeout" || fail "watch --help"
  [ "$(p version)" = "$(p --version)" ] || fail "version and --version differ"
  grep -qE '^provisio [0-9]+\.[0-9]+\.[0-9]+' <<<"$(p version)" || fail "version: $(p version)"
}

# The events of configmap NAME in a watch output file: "TYPE" per line.
event_types_of() {
  python3 -c '
import json, sys
for line in open(sys.argv[1]):
    ev = json.loads(line)
    if ev["object"]["metadata"]["name"] == sys.argv[2]:
        print(ev["type"])
' "$1" "$2"
}

deleted_seen() { grep -qx DELETED <<<"$(event_types_of "$1" "$2")"; }

test_watch_prints_events_in_order_and_stops_on_sigint() {
  local out=$tmp/watch.out err=$tmp/watch.err rc=0 deadline watcher_pid
  # Not through p(): a backgrounded function is a subshell, and $! would be its pid.
  "$PROVISIO_BINARY" watch configmaps -n "$ns" >"$out" 2>"$err" &
  watcher_pid=$!
  # Tests run in a subshell of their own: a failing one must not leave the watcher behind.
  trap 'kill -KILL "$watcher_pid" 2>/dev/null || true' EXIT
  # The existing configmaps come first as ADDED: then the watch is open.
  eventually 30 "the watch lists what exists" grep -q '"name":"three"' "$out"
  k create configmap watched -n "$ns" --from-literal=k=a >/dev/null
  k patch configmap watched -n "$ns" -p '{"data":{"k":"b"}}' >/dev/null
  k delete configmap watched -n "$ns" >/dev/null
  eventually 30 "DELETED of configmap watched" deleted_seen "$out" watched
  [ "$(event_types_of "$out" watched | tr '\n' ' ')" = "ADDED MODIFIED DELETED " ] ||
    fail "events of watched: $(event_types_of "$out" watched | tr '\n' ' ')"
  grep -q '^{"type":"ADDED","object":{' "$out" || fail "lines are not {\"type\",\"object\"}"

  kill -INT "$watcher_pid"
  deadline=$((SECONDS + 5))
  while kill -0 "$watcher_pid" 2>/dev/null; do
    ((SECONDS < deadline)) || fail "the watcher still runs 5 s after SIGINT"
    sleep 0.1
  done
  wait "$watcher_pid" || rc=$?
  watcher_pid=
  trap - EXIT
  [ "$rc" -eq 0 ] || fail "the watcher exited $rc after SIGINT, want 0:" "$(cat "$err")"
}

test_watch_by_name_with_server_timeout_exits_0() {
  local out=$tmp/timeout.out rc=0 start=$SECONDS
  timeout 60 "$PROVISIO_BINARY" watch configmaps one -n "$ns" --timeout 2 >"$out" || rc=$?
  [ "$rc" -eq 0 ] || fail "watch --timeout 2 exited $rc, want 0"
  ((SECONDS - start <= 30)) || fail "watch --timeout 2 took $((SECONDS - start)) s"
  [ "$(event_types_of "$out" one)" = ADDED ] || fail "want one ADDED of one, got: $(cat "$out")"
  [ "$(wc -l <"$out")" -eq 1 ] || fail "a watch by name printed other objects: $(cat "$out")"
}

# ---------------------------------------------------------------------------

setup_namespace
tests=(
  test_get_lists_a_namespace_like_kubectl
  test_get_by_name_prints_the_object
  test_get_with_selectors
  test_get_cluster_scoped_nodes_ignores_namespace
  test_get_grouped_resource_across_namespaces
  test_missing_object_and_type_exit_1_with_kubectl_messages
  test_help_and_version
  test_watch_prints_events_in_order_and_stops_on_sigint
  test_watch_by_name_with_server_timeout_exits_0
)
echo "1..${#tests[@]}"
failed=0
i=0
for t in "${tests[@]}"; do
  i=$((i + 1))
  start=$SECONDS
  set +e
  (
    set -e
    "$t"
  )
  rc=$?
  set -e
  if ((rc == 0)); then
    echo "ok $i - ${t#test_} ($((SECONDS - start)) s)"
  else
    echo "not ok $i - ${t#test_} ($((SECONDS - start)) s)"
    failed=$((failed + 1))
  fi
done
if ((failed)); then
  echo "# $failed of ${#tests[@]} failed"
  exit 1
fi
