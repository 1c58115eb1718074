/*
 * cni_ops - the CNI commands of provisio-cni against the API server.
 *
 *   ADD     create (or find, on a retried ADD) the attachment's IPClaim in
 *           each configured pool, in the pod's namespace, owned by the Pod;
 *           wait (bounded by ipam.timeout) for Ready through a watch; print
 *           the result. A claim that turns Ready=False PoolNotFound /
 *           InvalidSpec fails at once (code 7), PoolExhausted /
 *           PoolTerminating at once too (code 11: try again later); claims
 *           this ADD created are deleted again when it fails.
 *   DEL     delete the claims; a claim already gone is success.
 *   CHECK   the claims exist (else code 3), are Ready and hold the
 *           addresses prevResult lists (else code 101).
 *   STATUS  every pool exists, is Ready and has an address available
 *           (else code 50, with the reason).
 *   GC      delete this node's claims of this network (labels) whose
 *           attachment is not in cni.dev/valid-attachments.
 *   VERSION needs no API server (cni_result_version).
 *
 * The namespace of the claims is K8S_POD_NAMESPACE, else ipam.namespace,
 * else the kubeconfig context's. The node is ipam.nodeName, else this
 * host's name (the kubelet's default node name). Unreachable API server,
 * timeouts and 429/5xx answers are code 11 (an ADD retries its create and
 * its watch through them until its deadline); 401/403 code 100
 * (credentials or RBAC), each message saying what to look at.
 *
 * Threading: cni_ops_run runs on the calling thread; an ADD starts one
 * watchdog thread that stops the Ready watch at the deadline.
 */
#ifndef PROVISIO_CNI_OPS_H
#define PROVISIO_CNI_OPS_H

#include "cni_config.h"
#include "cni_error.h"

/*
 * Run env->command with conf (both borrowed). On success *out is what to
 * print on stdout (malloc'd; NULL when the command prints nothing: DEL,
 * STATUS, GC). Returns 0 or a negated CNI code with err set.
 */
int cni_ops_run(const cni_env *env, const cni_conf *conf, char **out, cni_error *err);

#endif
