# Shared by the device e2e tests (device_test.sh, device_health_test.sh);
# sourced after lib.sh.

# device_cleanup NS LABEL RESOURCE...: after the operators were stopped,
# remove what a test left by hand: its pods, the finalizers of its claims and
# pools (then the namespace, the pools and their Reservations), and the
# RESOURCE keys of every node's capacity and allocatable.
device_cleanup() {
  local ns=$1 label=$2 o n r
  shift 2
  e2e_force_delete_pods "$ns"
  for o in $(kubectl get deviceclaims -n "$ns" -o name 2>/dev/null); do
    kubectl patch -n "$ns" "$o" --type=merge -p '{"metadata":{"finalizers":null}}'
  done
  kubectl delete namespace "$ns" --wait=false
  for o in $(kubectl get devicepools -l "$label" -o name 2>/dev/null); do
    kubectl patch "$o" --type=merge -p '{"metadata":{"finalizers":null}}'
    kubectl delete reservations -l "provisio.dev/pool=${o#*/}" --wait=false
  done
  kubectl delete devicepools -l "$label" --wait=false
  for n in node-a node-b node-c; do
    for r in "$@"; do
      r=${r//\//\~1}
      kubectl patch node "$n" --subresource=status --type=json \
        -p "[{\"op\":\"remove\",\"path\":\"/status/capacity/$r\"},{\"op\":\"remove\",\"path\":\"/status/allocatable/$r\"}]"
    done
  done
}
