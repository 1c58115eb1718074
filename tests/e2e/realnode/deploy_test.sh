#!/usr/bin/env bash
# End-to-end test on the real node (hack/kube-local up --real-node: containerd
# and a kubelet on this machine): provisio's own image, built from the
# Dockerfile by hack/make-image, deployed with config/default exactly as a
# user would, running as pods.
#
#  1. the node is Ready with containerd as its runtime; the image is loaded;
#  2. config/default: the Deployment becomes Available with 2 replicas, both
#     pods Running on the real node as the provisio-controller-manager
#     ServiceAccount, and exactly one holds the Lease (its holderIdentity
#     names one of the pods);
#  3. the node agent DaemonSet of config/agent (in config/default) is ready
#     on the real node as its ServiceAccount, with no request refused;
#     3b. it sees the host's /dev (mounted at /host/dev, --host-root=/host):
#     a DevicePool discovering /dev/null and files the test makes in the
#     host's /dev lists them healthy, one of them mode 0600 root (the agent
#     runs as root with CAP_DAC_OVERRIDE, for its volume half: it opens it),
#     and a file created afterwards appears in its status, then leaves it
#     when removed;
#     3d. it writes provisio-cni's kubeconfig into the host's
#     /etc/cni/net.d/provisio.d, mode 0600, a token of config/cni's
#     ServiceAccount with the plugin's rights (checked with kubectl);
#     3c. volumes: a StoragePool under /var/lib/provisio on the real node is
#     Ready (the agent pod's report), a Volume gets its directory on the
#     host (made by the agent pod), a PV and a Bound PVC, a pod of
#     provisio's image using the PVC runs to completion on the real node
#     (kubelet mounts the local volume), and deleting the Volume removes the
#     directory;
#     the network samples become Ready (reconciled in-cluster: the pods reach
#     the API server at the kubernetes Service address with TLS verified);
#  4. the leader's process is SIGKILLed (through containerd; no Lease
#     release): another identity holds the Lease within lease duration +
#     retry and a claim made afterwards becomes Ready; then the leader pod is
#     deleted: the Lease moves to the other pod, a new claim becomes Ready,
#     and the Deployment is back to 2 available;
#  5. RBAC is the real ServiceAccount's and nothing was refused: no 401/403
#     in any pod's rest_client_requests_total, read through the API server's
#     pod proxy, and no "forbidden" in the logs (read through the kubelet).
#
# Environment (set by the ctest fixture realnode, see tests/CMakeLists.txt):
#   KUBECONFIG, PATH, PROVISIO_KUBE_DIR  the real node's control plane
#   PROVISIO_IMAGE_TAR                   the image tarball (hack/make-image)
#   PROVISIO_SOURCE_DIR                  the source tree
# Run by hand (root):
#   hack/make-image /tmp/provisio.tar && hack/kube-local up --real-node /tmp/rn
#   . /tmp/rn/env && PROVISIO_IMAGE_TAR=/tmp/provisio.tar bash tests/e2e/realnode/deploy_test.sh
#
# Output is TAP; the exit status is non-zero if any test failed.
# Test functions run through e2e_test, which shellcheck cannot follow.
# shellcheck disable=SC2317
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib.sh
. "$here/../lib.sh"
SRC=${PROVISIO_SOURCE_DIR:-$(cd "$here/../../.." && pwd)}
KUBECTL=${KUBECTL:-kubectl}
e2e_require_env KUBECONFIG PROVISIO_KUBE_DIR PROVISIO_IMAGE_TAR
e2e_require_cmd "$KUBECTL" python3
e2e_init realnode

SYS=provisio-system
DEPLOY=provisio-controller-manager
LEASE=provisio.provisio.dev
sample_ns=realnode-samples

k() { "$KUBECTL" "$@"; }

# Files of the host's /dev the agent pod is shown in 3b.
DEV_LOCKED=/dev/provisio-e2e-locked
DEV_PLUGGED=/dev/provisio-e2e-plugged
DEV_POOL=realnode-e2e-dev
VOL_POOL=realnode-e2e-vol
VOL_DIR=/var/lib/provisio/realnode-e2e

cleanup() {
  k delete -n "$sample_ns" ipclaims --all --wait=false
  k delete namespace "$sample_ns" --wait=false
  k delete devicepool "$DEV_POOL" --ignore-not-found --wait=false
  rm -f "$DEV_LOCKED" "$DEV_PLUGGED"
  k delete -n "$sample_ns" pods,volumes --all --wait=false
  k delete storagepool "$VOL_POOL" --ignore-not-found --wait=false
  rm -rf "$VOL_DIR"
}
e2e_on_exit cleanup

leader_pod() {
  local holder
  holder=$(k -n "$SYS" get lease "$LEASE" -o jsonpath='{.spec.holderIdentity}' 2>/dev/null) || return 1
  [ -n "$holder" ] || return 1
  echo "${holder%%_*}"
}

pods() { k -n "$SYS" get pods -l app.kubernetes.io/component=controller-manager -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}'; }

test_node_ready_and_image_loaded() {
  local runtime
  [ "$(k get node real-node -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ] ||
    e2e_fail "real-node is not Ready"
  runtime=$(k get node real-node -o jsonpath='{.status.nodeInfo.containerRuntimeVersion}')
  [[ $runtime == containerd://* ]] || e2e_fail "real-node's runtime is '$runtime'"
  "$SRC/hack/kube-local" load-image "$PROVISIO_KUBE_DIR" "$PROVISIO_IMAGE_TAR" 2>&1 | sed 's/^/# /'
  k get nodes -o wide | sed 's/^/# /'
}

deployment_available() {
  local ready
  ready=$(k -n "$SYS" get deployment "$DEPLOY" -o jsonpath='{.status.availableReplicas}/{.status.replicas}')
  [ "$ready" = 2/2 ] || {
    echo "available/replicas: $ready"
    k -n "$SYS" get pods -o wide
    return 1
  }
}

test_config_default_runs_two_replicas_one_leading() {
  local t0 leader p
  t0=$(e2e_now)
  k apply --server-side --force-conflicts -k "$SRC/config/default" >/dev/null
  e2e_wait_for 180 "Deployment $DEPLOY available with 2 replicas" deployment_available
  e2e_diag "figure: config/default applied to 2/2 available in $(e2e_since "$t0") s"
  e2e_wait_for 60 "a pod holds the Lease" leader_pod
  leader=$(leader_pod)
  local all
  all=$(pods)
  grep -qx "$leader" <<<"$all" || e2e_fail "Lease holder $leader is not one of the pods: $(tr '\n' ' ' <<<"$all")"
  for p in $(pods); do
    [ "$(k -n "$SYS" get pod "$p" -o jsonpath='{.spec.nodeName} {.spec.serviceAccountName} {.status.phase}')" = \
      "real-node $DEPLOY Running" ] || e2e_fail "pod $p is not Running on real-node as $DEPLOY"
  done
  k -n "$SYS" get pods -o wide | sed 's/^/# /'
  e2e_diag "leader: $leader"
}

agent_ready() {
  local got
  got=$(k -n "$SYS" get daemonset provisio-agent -o jsonpath='{.status.numberReady}/{.status.desiredNumberScheduled}')
  [ "$got" = 1/1 ] || {
    echo "ready/desired: $got"
    k -n "$SYS" get pods -l app.kubernetes.io/component=agent -o wide
    return 1
  }
}

test_agent_daemonset_runs() {
  local pod metrics logs bad
  e2e_wait_for 120 "DaemonSet provisio-agent ready on the real node" agent_ready
  pod=$(k -n "$SYS" get pods -l app.kubernetes.io/component=agent -o jsonpath='{.items[0].metadata.name}')
  [ "$(k -n "$SYS" get pod "$pod" -o jsonpath='{.spec.nodeName} {.spec.serviceAccountName} {.status.phase}')" = \
    "real-node provisio-agent Running" ] || e2e_fail "agent pod $pod is not Running on real-node as provisio-agent"
  metrics=$(k get --raw "/api/v1/namespaces/$SYS/pods/$pod:8080/proxy/metrics") ||
    e2e_fail "no metrics from the agent pod $pod"
  bad=$(grep -E '^rest_client_requests_total\{.*code="(401|403)"' <<<"$metrics" || true)
  [ -z "$bad" ] || e2e_fail "the agent was refused requests:" "$bad"
  logs=$(k -n "$SYS" logs "$pod") || e2e_fail "no logs of the agent pod $pod"
  ! grep -qi forbidden <<<"$logs" || e2e_fail "the agent logged a forbidden request"
  k -n "$SYS" get daemonset provisio-agent -o wide | sed 's/^/# /'
}

# dev_status DEVICE-ID: "HEALTHY AGENT-MESSAGE": status.devices[].healthy of
# the pool, and the message of the agent's own report (status.agent) for it.
dev_status() {
  k get devicepool "$DEV_POOL" -o json | python3 -c '
import json, sys
st = json.load(sys.stdin).get("status") or {}
healthy = [d.get("healthy") for d in st.get("devices") or [] if d.get("id") == sys.argv[1]]
msg = [d.get("message", "") for d in (st.get("agent") or {}).get("devices") or [] if d.get("id") == sys.argv[1]]
if healthy:
    print("%s %s" % (healthy[0], msg[0] if msg else ""))' "$1"
}

dev_is() { # DEVICE-ID WANT-PREFIX
  local got
  got=$(dev_status "$1")
  [[ $got == "$2"* ]] || {
    echo "device $1: '$got', want '$2...'"
    return 1
  }
}

dev_gone() { # DEVICE-ID
  [ -z "$(dev_status "$1")" ] || {
    echo "device $1 still listed: $(dev_status "$1")"
    return 1
  }
}

test_agent_sees_the_host_dev() {
  : >"$DEV_LOCKED"
  chmod 600 "$DEV_LOCKED"
  k apply -f - >/dev/null <<YAML
apiVersion: provisio.dev/v1alpha1
kind: DevicePool
metadata:
  name: $DEV_POOL
spec:
  nodeName: real-node
  resourceName: e2e.provisio.dev/hostdev
  publish: None
  discover:
    paths: [/dev/null, /dev/provisio-e2e-*]
YAML
  e2e_wait_for 60 "/dev/null found by the agent pod" dev_is null "True"
  e2e_wait_for 30 "$DEV_LOCKED (mode 0600 root) found" dev_is provisio-e2e-locked True
  local t0
  t0=$(e2e_now)
  : >"$DEV_PLUGGED"
  e2e_wait_for 30 "$DEV_PLUGGED appears in the pool's status" dev_is provisio-e2e-plugged True
  e2e_diag "a file made in the host's /dev shown in the pool's status after $(e2e_since "$t0") s"
  rm -f "$DEV_PLUGGED"
  # A discovered device whose file is gone is gone from the pool (a declared
  # one would turn unhealthy instead: device_agent_test).
  e2e_wait_for 30 "$DEV_PLUGGED gone from the pool once removed" dev_gone provisio-e2e-plugged
  k get devicepool "$DEV_POOL" -o wide | sed 's/^/# /'
  k delete devicepool "$DEV_POOL" --wait=true --timeout=60s >/dev/null ||
    e2e_fail "DevicePool $DEV_POOL not deleted"
}

# 3d. provisio-cni's kubeconfig, written by the agent pod into the host's
# /etc/cni/net.d/provisio.d (the only host directory of that kind it
# mounts), mode 0600, authenticating as config/cni's ServiceAccount with
# the plugin's rights. Its server is the in-cluster one (the kubernetes
# Service, which this node reaches only from pods: no kube-proxy), so
# kubectl is pointed at the API server's loopback port, same CA.
CNI_KUBECONFIG=/etc/cni/net.d/provisio.d/kubeconfig
test_agent_writes_the_cni_kubeconfig() {
  local port who ans
  e2e_wait_for 30 "$CNI_KUBECONFIG written by the agent pod" test -s "$CNI_KUBECONFIG"
  [ "$(stat -c %a "$CNI_KUBECONFIG")" = 600 ] ||
    e2e_fail "$CNI_KUBECONFIG has mode $(stat -c %a "$CNI_KUBECONFIG")"
  port=$(sed -n 's/^APISERVER_PORT=//p' "$PROVISIO_KUBE_DIR/run/ports.env")
  who=$(k --kubeconfig "$CNI_KUBECONFIG" --server "https://127.0.0.1:$port" auth whoami \
    -o jsonpath='{.status.userInfo.username}' 2>&1) || e2e_fail "kubectl cannot use it" "$who"
  [ "$who" = "system:serviceaccount:$SYS:provisio-cni" ] || e2e_fail "it authenticates as '$who'"
  ans=$(k --kubeconfig "$CNI_KUBECONFIG" --server "https://127.0.0.1:$port" auth can-i create \
    ipclaims.provisio.dev -n default 2>/dev/null || true)
  [ "$ans" = yes ] || e2e_fail "provisio-cni may not create IPClaims: '$ans'"
  e2e_diag "server in the file: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["clusters"][0]["cluster"]["server"])' "$CNI_KUBECONFIG")"
}

test_volume_on_the_real_node() {
  mkdir -p "$VOL_DIR"
  k create namespace "$sample_ns" --dry-run=client -o yaml | k apply -f - >/dev/null
  k apply -f - >/dev/null <<YAML
apiVersion: provisio.dev/v1alpha1
kind: StoragePool
metadata:
  name: $VOL_POOL
spec:
  nodeName: real-node
  path: $VOL_DIR
  capacity: 1Gi
YAML
  e2e_wait_for 60 "$VOL_POOL Ready (the agent pod's report)" \
    sh -c "$KUBECTL wait --for=condition=Ready storagepool/$VOL_POOL --timeout=1s >/dev/null 2>&1"
  k apply -n "$sample_ns" -f - >/dev/null <<YAML
apiVersion: provisio.dev/v1alpha1
kind: Volume
metadata:
  name: rn-data
spec:
  size: 64Mi
  pool: $VOL_POOL
YAML
  k wait -n "$sample_ns" --for=condition=Ready --timeout=90s volume/rn-data >/dev/null ||
    e2e_fail "Volume rn-data not Ready: $(k get volume -n "$sample_ns" rn-data -o jsonpath='{.status.conditions}')"
  local uid dir
  uid=$(k get volume -n "$sample_ns" rn-data -o jsonpath='{.metadata.uid}')
  dir=$VOL_DIR/${sample_ns}_rn-data_$uid
  [ -d "$dir" ] || e2e_fail "no directory $dir on the host"
  k apply -n "$sample_ns" -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: rn-data-user
spec:
  restartPolicy: Never
  containers:
    - name: c
      image: provisio:dev
      imagePullPolicy: Never
      args: [--version]
      volumeMounts: [{name: d, mountPath: /data}]
  volumes: [{name: d, persistentVolumeClaim: {claimName: rn-data}}]
YAML
  e2e_wait_for 90 "a pod using PVC rn-data ran on the real node" \
    sh -c "[ \"\$($KUBECTL get pod -n $sample_ns rn-data-user -o jsonpath='{.status.phase}')\" = Succeeded ]"
  k get volume,pvc,pod -n "$sample_ns" | sed 's/^/# /'
  k delete pod -n "$sample_ns" rn-data-user --wait=true --timeout=60s >/dev/null
  k delete volume -n "$sample_ns" rn-data --wait=false >/dev/null
  e2e_wait_for 120 "Volume rn-data gone and its directory removed by the agent pod" \
    sh -c "! $KUBECTL get volume -n $sample_ns rn-data >/dev/null 2>&1 && [ ! -e $dir ]"
  k delete storagepool "$VOL_POOL" --wait=true --timeout=60s >/dev/null || e2e_fail "StoragePool $VOL_POOL not deleted"
}

test_samples_become_ready() {
  k create namespace "$sample_ns" --dry-run=client -o yaml | k apply -f - >/dev/null
  k apply -f "$SRC/config/samples/provisio_v1alpha1_ippool.yaml" >/dev/null
  k apply -n "$sample_ns" -f "$SRC/config/samples/provisio_v1alpha1_ipclaim.yaml" >/dev/null
  k wait --for=condition=Ready --timeout=90s ippool --all >/dev/null
  k wait --for=condition=Ready --timeout=90s -n "$sample_ns" ipclaim --all >/dev/null
  k get ippools,ipclaims -n "$sample_ns" | sed 's/^/# /'
}

holder() { k -n "$SYS" get lease "$LEASE" -o jsonpath='{.spec.holderIdentity}' 2>/dev/null; }

# new_claim NAME: an IPClaim made now becomes Ready (someone reconciles).
new_claim() {
  k apply -n "$sample_ns" -f - >/dev/null <<EOF
apiVersion: provisio.dev/v1alpha1
kind: IPClaim
metadata:
  name: $1
spec:
  pool: demo-v4
EOF
  k wait --for=condition=Ready --timeout=90s -n "$sample_ns" "ipclaim/$1" >/dev/null
}

test_sigkill_of_the_leader_moves_the_lease() {
  local old pod cid t0
  old=$(holder)
  pod=${old%%_*}
  cid=$(k -n "$SYS" get pod "$pod" -o jsonpath='{.status.containerStatuses[0].containerID}')
  cid=${cid#containerd://}
  [ -n "$cid" ] || e2e_fail "no container id for the leader pod $pod"
  t0=$(e2e_now)
  # kill -9 of the operator process itself, through containerd: no Lease
  # release; the kubelet restarts the container (a new identity).
  ctr --address "$PROVISIO_KUBE_DIR/containerd/containerd.sock" -n k8s.io tasks kill -s SIGKILL "$cid"
  holder_changed() {
    local now
    now=$(holder)
    if [ -z "$now" ] || [ "$now" = "$old" ]; then
      echo "still held by $old"
      return 1
    fi
  }
  # Lease duration 15 s + retry 2 s (DESIGN.md), plus room for a loaded machine.
  e2e_wait_for 45 "the Lease of the SIGKILLed leader $old taken over" holder_changed
  e2e_diag "figure: leader SIGKILLed to Lease held by $(holder) in $(e2e_since "$t0") s (lease 15 s, retry 2 s)"
  new_claim after-sigkill
  e2e_wait_for 120 "Deployment $DEPLOY back to 2 available" deployment_available
}

test_deleting_the_leader_pod_moves_the_lease() {
  local old t0
  old=$(leader_pod)
  t0=$(e2e_now)
  k -n "$SYS" delete pod "$old" --wait=false >/dev/null
  lease_moved() {
    local now
    now=$(leader_pod) || return 1
    [ "$now" != "$old" ] || {
      echo "still held by $old"
      return 1
    }
  }
  e2e_wait_for 60 "the Lease leaves the deleted pod $old" lease_moved
  e2e_diag "figure: leader pod deleted to Lease held by $(leader_pod) in $(e2e_since "$t0") s"
  new_claim after-delete
  e2e_wait_for 120 "Deployment $DEPLOY back to 2 available" deployment_available
  k -n "$SYS" get pods -o wide | sed 's/^/# /'
}

test_nothing_refused() {
  local p metrics logs bad
  for p in $(pods); do
    metrics=$(k get --raw "/api/v1/namespaces/$SYS/pods/$p:8080/proxy/metrics") ||
      e2e_fail "no metrics from pod $p through the API server's pod proxy"
    grep -q '^rest_client_requests_total' <<<"$metrics" || e2e_fail "pod $p has no rest_client_requests_total"
    bad=$(grep -E '^rest_client_requests_total\{.*code="(401|403)"' <<<"$metrics" || true)
    [ -z "$bad" ] || e2e_fail "pod $p was refused requests:" "$bad"
    logs=$(k -n "$SYS" logs "$p") || e2e_fail "no logs of pod $p through the kubelet"
    ! grep -qi forbidden <<<"$logs" || e2e_fail "pod $p logged a forbidden request:" "$(grep -i forbidden <<<"$logs" | head -3)"
    e2e_diag "pod $p: $(grep -c '^rest_client_requests_total' <<<"$metrics") request series, none 401/403"
  done
}

e2e_test "the real node is Ready on containerd and provisio's image is loaded" test_node_ready_and_image_loaded
e2e_last_ok || e2e_bail "no real node"
e2e_test "config/default runs two replicas on the real node, one leading" test_config_default_runs_two_replicas_one_leading
e2e_last_ok || e2e_bail "the Deployment did not come up"
e2e_test "the node agent DaemonSet (config/agent) runs on the real node" test_agent_daemonset_runs
e2e_test "the agent pod sees the host's /dev: discovery, presence-only files, hot-plug" \
  test_agent_sees_the_host_dev
e2e_test "the agent pod writes provisio-cni's kubeconfig (0600, its ServiceAccount) on the host" \
  test_agent_writes_the_cni_kubeconfig
e2e_test "a Volume on the real node: the agent pod's directory, PV, PVC Bound, a pod mounts it" \
  test_volume_on_the_real_node
e2e_test "the network samples become Ready, reconciled in-cluster" test_samples_become_ready
e2e_test "SIGKILL of the leader's process: another takes the Lease and reconciling goes on" \
  test_sigkill_of_the_leader_moves_the_lease
e2e_test "deleting the leader pod moves the Lease and reconciling goes on" \
  test_deleting_the_leader_pod_moves_the_lease
e2e_test "RBAC is the ServiceAccount's and no request was refused" test_nothing_refused
e2e_done
