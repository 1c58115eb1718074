# shellcheck shell=bash
# The real node of hack/kube-local (`up --real-node DIR`), sourced by it:
# containerd (Debian's, all its state under DIR/containerd) and a kubelet of
# the control plane's version registered as node `real-node` (this machine's
# address), with pod networking (Debian's CNI bridge + host-local plugins, a
# bridge kl-cni0 with 10.244.0.0/24) and pods reaching the API server at the
# `kubernetes` Service address 10.96.0.1:443 through one DNAT rule to the
# loopback port (there is no kube-proxy), so in-cluster config works as in a
# real cluster. Pods' images come from `load-image DIR TARBALL`; the sandbox
# image is tools/pause/pause.c (hack/make-image pause).
#
# Gotchas of this machine that it handles (found by hand first):
#   - root lacks CAP_SYS_RESOURCE: runc fails every sandbox ("can't get final
#     child's PID from pipe: EOF") unless containerd's CRI plugin sets
#     restrict_oom_score_adj;
#   - cgroup v1: the kubelet needs failCgroupV1: false and the cgroupfs driver;
#   - the host name does not resolve: kube-apiserver reaches the kubelet by
#     InternalIP (--kubelet-preferred-address-types) with a client
#     certificate, and the kubelet authenticates and authorizes it through
#     the API server (webhook), not anonymously;
#   - the kubelet bind-mounts its root dir onto itself and writes a few fixed
#     paths whatever its flags (/var/lib/kubelet/device-plugins,
#     /var/log/containers): one real node per machine.
#
# `down` stops the kubelet first (and the scheduler: deleting pods through
# the API would race the ReplicaSet controller), removes every pod through
# the CRI (cri-clean: CNI DEL, netns), stops containerd, unmounts what is left
# under DIR, removes the DNAT rule, the bridge, the kubepods cgroups and the
# kubelet's /var/log/containers links, and restores route_localnet (and /'s
# mount propagation, when up made it shared).

REAL_NODE=real-node
POD_CIDR=10.244.0.0/24
POD_BRIDGE=kl-cni0
CNI_NETWORK=kube-local
REAL_NODE_LOCK=/run/provisio-kube-local-real-node
PAUSE_IMAGE=localhost/kube-local/pause:1

real_node_enabled() { [ -e "$DIR/run/real-node" ]; }

containerd_sock() { echo "$DIR/containerd/containerd.sock"; }

ctr_k8s() { ctr --address "$(containerd_sock)" -n k8s.io "$@"; }

# node_ip: this machine's address on its default route.
node_ip() {
  ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -n1
}

real_node_preflight() {
  [ "$(id -u)" -eq 0 ] || die "--real-node needs root (containerd, kubelet, iptables, mounts, cgroups)"
  [ -d /sys/fs/cgroup/memory ] || [ -e /sys/fs/cgroup/cgroup.controllers ] ||
    die "--real-node needs cgroups: neither cgroup v1 (memory) nor v2 is mounted at /sys/fs/cgroup"
  local other
  other=$(cat "$REAL_NODE_LOCK" 2>/dev/null || true)
  if [ -n "$other" ] && [ "$other" != "$DIR" ] && [ -e "$other/run/real-node" ] &&
    ! (DIR=$other && { component_running kubelet || component_running containerd; }); then
    # A run that was killed before its `down`: nothing of it runs, but its
    # bridge, rules and cgroups would get in this node's way.
    log "the real node of $other is stale (neither its kubelet nor its containerd runs); cleaning up after it"
    "$ROOT/hack/kube-local" down "$other" || die "could not clean up the stale real node of $other"
    other=""
  fi
  if [ -n "$other" ] && [ "$other" != "$DIR" ] && [ -e "$other/run/real-node" ]; then
    die "a real node already runs from $other (one per machine: the kubelet writes fixed paths); hack/kube-local down $other first"
  fi
  local -A pkg_of=([containerd]=containerd [ctr]=containerd [runc]=runc [iptables]=iptables [ip]=iproute2)
  local cmd missing=()
  for cmd in "${!pkg_of[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${pkg_of[$cmd]}")
  done
  [ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
      { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; } ||
      die "could not install ${missing[*]}"
  fi
  NODE_IP=$(node_ip)
  [ -n "$NODE_IP" ] || die "--real-node: no IPv4 address on a default route for the kubelet"
}

real_node_pki() {
  issue ca kubelet-client "/O=system:nodes/CN=system:node:$REAL_NODE" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  issue ca kubelet-serving "/CN=$REAL_NODE" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$NODE_IP,IP:127.0.0.1,DNS:$REAL_NODE,DNS:$(hostname)"
}

write_containerd_config() {
  mkdir -p "$DIR/containerd" "$DIR/cni/net.d" "$DIR/cni/ipam"
  cat >"$DIR/containerd/config.toml" <<EOF
# containerd of kube-local's real node (hack/kube-local-real-node.sh)
version = 2
root = "$DIR/containerd/root"
state = "$DIR/containerd/state"
[grpc]
  address = "$(containerd_sock)"
[ttrpc]
  address = "$(containerd_sock).ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$DIR/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # root here lacks CAP_SYS_RESOURCE: without this runc cannot set the
  # sandbox's oom_score_adj and every pod fails to start.
  restrict_oom_score_adj = true
  enable_cdi = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$DIR/cni/net.d"
EOF
  cat >"$DIR/cni/net.d/10-kube-local.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$CNI_NETWORK",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$POD_BRIDGE",
      "isGateway": true,
      "isDefaultGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR"}]],
        "dataDir": "$DIR/cni/ipam"
      }
    }
  ]
}
EOF
}

write_kubelet_config() {
  mkdir -p "$DIR/kubelet" "$DIR/pod-logs"
  cat >"$DIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $DIR/pki/kubelet-serving.crt
tlsPrivateKeyFile: $DIR/pki/kubelet-serving.key
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $DIR/pki/ca.crt
authorization:
  mode: Webhook
cgroupDriver: cgroupfs
failCgroupV1: false
containerRuntimeEndpoint: unix://$(containerd_sock)
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
failSwapOn: false
podLogsDir: $DIR/pod-logs
staticPodPath: ""
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
EOF
}

start_containerd() {
  start_component containerd "$(command -v containerd)" --config "$DIR/containerd/config.toml" --log-level warn
}

containerd_ready() { ctr --address "$(containerd_sock)" version; }

start_kubelet() {
  start_component kubelet "$DIR/bin/kubelet" \
    --config="$DIR/kubelet.yaml" \
    --kubeconfig="$DIR/pki/kubelet.kubeconfig" \
    --root-dir="$DIR/kubelet" \
    --cert-dir="$DIR/run/kubelet-certs" \
    --hostname-override="$REAL_NODE" \
    --node-ip="$NODE_IP" \
    --node-labels="provisio.dev/kube-local-node=real" \
    --v=1
}

real_node_ready() {
  [ "$("$DIR/bin/kubectl" --kubeconfig="$DIR/kubeconfig" get node "$REAL_NODE" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

dnat_rule() {
  printf '%s\n' PREROUTING -s "$POD_CIDR" -d "$SERVICE_IP/32" -p tcp --dport 443 \
    -m comment --comment "kube-local $DIR" -j DNAT --to-destination "127.0.0.1:$APISERVER_PORT"
}

add_network_rules() {
  local rule=()
  mapfile -t rule < <(dnat_rule)
  sysctl -n net.ipv4.conf.all.route_localnet >"$DIR/run/route_localnet.old"
  sysctl -qw net.ipv4.conf.all.route_localnet=1
  iptables -t nat -C "${rule[@]}" 2>/dev/null || iptables -t nat -A "${rule[@]}"
}

# make_root_shared: a systemd host's / is a shared mount, and pods count on
# it: a hostPath volume with mountPropagation HostToContainer (the provisio
# agent's pool directories) is refused by containerd on a private one ("is
# not a shared or slave mount"). A host whose / is private (a container, a
# minimal VM) gets it shared for as long as the real node runs; down makes
# it private again.
make_root_shared() {
  [ "$(findmnt -no PROPAGATION /)" != private ] && return 0
  mount --make-shared / || die "cannot make / a shared mount (mount --make-shared /)"
  : >"$DIR/run/made-root-shared"
}

# real_node_up: after the control plane (and the scheduler) is up.
real_node_up() {
  local rc=0 t0=$SECONDS
  : >"$DIR/run/real-node"
  printf '%s\n' "$DIR" >"$REAL_NODE_LOCK"
  [ -e /var/lib/kubelet ] || : >"$DIR/run/created-var-lib-kubelet"
  [ -e /var/log/containers ] || : >"$DIR/run/created-var-log-containers"
  [ -e /run/containerd ] || : >"$DIR/run/created-run-containerd"
  # provisio's agent DaemonSet (config/agent) writes provisio-cni's
  # kubeconfig into the host's /etc/cni/net.d/provisio.d (and containerd
  # makes /etc/cni/net.d for its lock). Each level absent now is removed on
  # down.
  local d
  for d in /etc/cni /etc/cni/net.d /etc/cni/net.d/provisio.d; do
    [ -e "$d" ] || echo "$d" >>"$DIR/run/created-etc-cni-provisio"
  done
  real_node_pki
  write_kubeconfig "$DIR/pki/kubelet.kubeconfig" "system:node:$REAL_NODE" kubelet-client
  write_containerd_config
  write_kubelet_config
  add_network_rules
  make_root_shared

  log "starting containerd ($(containerd --version | awk '{print $3}')) with state in $DIR/containerd"
  start_containerd
  wait_for containerd "its socket" "$TIMEOUT" containerd_ready || rc=$?
  ((rc == 0)) || fail_component containerd "its socket $(containerd_sock)" "$rc"
  "$ROOT/hack/make-image" pause "$DIR/images/pause.tar" >/dev/null
  ctr_k8s images import "$DIR/images/pause.tar" >/dev/null

  log "starting kubelet as node $REAL_NODE ($NODE_IP:$KUBELET_PORT)"
  start_kubelet
  wait_for kubelet "node $REAL_NODE Ready" "$TIMEOUT" real_node_ready || rc=$?
  ((rc == 0)) || fail_component kubelet "node $REAL_NODE Ready" "$rc"
  log "real node $REAL_NODE Ready in $((SECONDS - t0)) s"
}

# mounts_under PATH: mount points at or below PATH, deepest first.
mounts_under() {
  awk -v p="$1" '{ gsub(/\\040/, " ", $5); if ($5 == p || index($5, p "/") == 1) print $5 }' /proc/self/mountinfo |
    sort -r | uniq
}

# real_node_down: stop and remove everything real_node_up made. Safe to run
# more than once and on a partial `up`.
real_node_down() {
  real_node_enabled || return 0
  local m rule=() ids
  stop_components kubelet kube-scheduler
  if component_running containerd; then
    "$DIR/bin/cri-clean" --endpoint "unix://$(containerd_sock)" 2>&1 | sed 's/^/kube-local: /' >&2 || true
    # Images and containers that are not pods (none, normally).
    mapfile -t ids < <(ctr_k8s tasks ls -q 2>/dev/null)
    for m in "${ids[@]}"; do ctr_k8s tasks kill -s KILL "$m" >/dev/null 2>&1 || true; done
  fi
  stop_components containerd
  # Shims of pods whose containerd is gone (normally none left).
  local p
  for p in /proc/[0-9]*; do
    if grep -qa -- "$DIR/containerd" "$p/cmdline" 2>/dev/null && [[ $(cat "$p/comm" 2>/dev/null) == containerd-shim* ]]; then
      kill -KILL "${p#/proc/}" 2>/dev/null || true
    fi
  done
  while IFS= read -r m; do
    [ -n "$m" ] || continue
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done < <(mounts_under "$DIR")
  if [ -f "$DIR/run/ports.env" ]; then
    load_ports
    mapfile -t rule < <(dnat_rule)
    while iptables -t nat -C "${rule[@]}" 2>/dev/null; do iptables -t nat -D "${rule[@]}"; done
  fi
  if [ -s "$DIR/run/route_localnet.old" ]; then
    sysctl -qw "net.ipv4.conf.all.route_localnet=$(cat "$DIR/run/route_localnet.old")" || true
    rm -f "$DIR/run/route_localnet.old"
  fi
  if [ -e "$DIR/run/made-root-shared" ]; then
    mount --make-private / || true
    rm -f "$DIR/run/made-root-shared"
  fi
  ip link delete "$POD_BRIDGE" 2>/dev/null || true
  # The kubelet's cgroups (cgroupfs driver): leaves first.
  local c
  for c in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [ -d "$c" ] || continue
    find "$c" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  # Links the kubelet makes in /var/log/containers point into its podLogsDir.
  for m in /var/log/containers/*.log; do
    [ -L "$m" ] || continue
    case $(readlink "$m") in "$DIR"/*) rm -f "$m" ;; esac
  done
  if [ -e "$DIR/run/created-var-lib-kubelet" ]; then
    rm -rf /var/lib/kubelet
    rm -f "$DIR/run/created-var-lib-kubelet"
  fi
  # Directories the kubelet and the shims make at fixed places, when up made
  # them and they are empty now.
  if [ -e "$DIR/run/created-var-log-containers" ]; then
    rmdir /var/log/containers 2>/dev/null || true
    rm -f "$DIR/run/created-var-log-containers"
  fi
  if [ -e "$DIR/run/created-etc-cni-provisio" ]; then
    local made
    made=$(cat "$DIR/run/created-etc-cni-provisio")
    if grep -qx /etc/cni/net.d/provisio.d <<<"$made"; then rm -rf /etc/cni/net.d/provisio.d; fi
    # containerd's CRI plugin leaves its cni.lock in the default conf dir.
    if grep -qx /etc/cni/net.d <<<"$made"; then
      rm -f /etc/cni/net.d/cni.lock
      rmdir /etc/cni/net.d 2>/dev/null || true
    fi
    if grep -qx /etc/cni <<<"$made"; then rmdir /etc/cni 2>/dev/null || true; fi
    rm -f "$DIR/run/created-etc-cni-provisio"
  fi
  if [ -e "$DIR/run/created-run-containerd" ]; then
    find /run/containerd -depth -type d -empty -delete 2>/dev/null || true
    rm -f "$DIR/run/created-run-containerd"
  fi
  [ "$(cat "$REAL_NODE_LOCK" 2>/dev/null)" != "$DIR" ] || rm -f "$REAL_NODE_LOCK"
  rm -f "$DIR/run/real-node"
}

# real_node_leftovers: what down should have removed and did not, one a
# line (empty when clean).
real_node_leftovers() {
  local rule=()
  mounts_under "$DIR" | sed 's/^/mount /'
  if [ -f "$DIR/run/ports.env" ]; then
    load_ports
    mapfile -t rule < <(dnat_rule)
    if iptables -t nat -C "${rule[@]}" 2>/dev/null; then echo "iptables DNAT rule"; fi
  fi
  if ip link show "$POD_BRIDGE" >/dev/null 2>&1; then echo "bridge $POD_BRIDGE"; fi
  local c
  for c in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    if [ -d "$c" ]; then echo "cgroup $c"; fi
  done
}

cmd_load_image() {
  require_up "${1:-}"
  local tarball=${2:-}
  real_node_enabled || die "$DIR has no real node (start it with: hack/kube-local up --real-node $DIR)"
  [ -f "$tarball" ] || die "load-image: no such file: '$tarball'"
  ctr_k8s images import "$tarball" | sed 's/^/kube-local: /' >&2
  ctr_k8s images ls -q | grep -v '^sha256:' | sed 's/^/kube-local: image /' >&2
}
