/*
 * ip_agent - the node agent's half of the network domain: the kubeconfig
 * provisio-cni reads on the node (API.md "CNI: provisio-cni": its ipam
 * configuration names /etc/cni/net.d/provisio.d/kubeconfig).
 *
 * provisio-cni runs as the container runtime's child on the host, where no
 * service-account token is mounted. With --cni-kubeconfig PATH, the agent
 * asks the API server for a token of the plugin's own ServiceAccount
 * (TokenRequest, `serviceaccounts/token`; config/cni gives that account
 * the plugin's RBAC and nothing else) and writes a kubeconfig holding it,
 * the server and the CA at <host-root>PATH, mode 0600, replaced atomically;
 * again at four fifths of the token's lifetime, and at once when the file is
 * removed or changed by someone else (checked every IP_CNI_CHECK_S). This is
 * what Calico's node does for its CNI plugin.
 *
 * The file is JSON (a subset of YAML every kubeconfig reader accepts), so
 * nothing in it needs YAML quoting rules.
 */
#ifndef PROVISIO_IP_AGENT_H
#define PROVISIO_IP_AGENT_H

#include "kc_config.h"
#include "rec_env.h"

/* s between two checks that the written file is still the one written. */
#define IP_CNI_CHECK_S 10.0

/* Lifetime asked for the token (the API server may give another). */
#define IP_CNI_TOKEN_SECONDS 3600

/*
 * The agent's network controller "cni-kubeconfig" when env->cni_kubeconfig
 * is set; nothing otherwise. 0 or a negative kc_status (KC_ERR_INVALID_ARG
 * for a path that is not absolute or a service account that is not
 * [NAMESPACE/]NAME).
 */
int ip_agent_setup(const rec_env *env);

/*
 * The kubeconfig document for provisio-cni: one cluster (server, the CA as
 * certificate-authority-data when tls->ca is set, insecure-skip-tls-verify
 * when tls->insecure, tls-server-name when set), one user with the bearer
 * token, one context, its current-context. All arguments borrowed. A new
 * NUL-terminated string the caller frees (it holds the token: wipe it), or
 * NULL when out of memory.
 */
char *ip_cni_kubeconfig_doc(const char *server, const kc_tls *tls, const char *token);

/*
 * Write text to path atomically: its directory made when missing (0755), a
 * temporary file beside it (0600) written, synced and renamed over path.
 * 0 or an errno value; on failure path is as it was and no temporary file
 * is left.
 */
int ip_cni_write_file(const char *path, const char *text);

#endif
