/*
 * cni_config - what provisio-cni is asked to do: the CNI_* environment and
 * the network configuration on stdin, parsed and checked before anything
 * reaches the API server.
 *
 * Environment (CNI specification 1.1, "Parameters"): CNI_COMMAND (ADD, DEL,
 * CHECK, STATUS, GC, VERSION), CNI_CONTAINERID and CNI_IFNAME (ADD, DEL,
 * CHECK), CNI_NETNS and CNI_PATH (read, not used: an IPAM plugin touches no
 * namespace), CNI_ARGS ("K=V;K=V": K8S_POD_NAMESPACE, K8S_POD_NAME,
 * K8S_POD_UID as the kubelet's runtime passes them; other keys are ignored,
 * as IgnoreUnknown says).
 *
 * Configuration (stdin): the network configuration of the plugin that
 * delegates to this one, with
 *   "ipam": {"type": "provisio-cni",
 *            "pool": "demo-v4"  or  "pools": ["demo-v4", "demo-v6"],
 *            "kubeconfig": "/etc/cni/net.d/provisio.d/kubeconfig",
 *            "network": "default",      (IPPool spec.network; kept in a label)
 *            "namespace": "default",    (when CNI_ARGS has no K8S_POD_NAMESPACE)
 *            "nodeName": "node-a",      (default: this host's name)
 *            "timeout": 10,             (seconds an ADD may take, Ready included)
 *            "requestTimeout": 5}       (seconds one API request may take)
 * and, by command, "prevResult" (CHECK) and "cni.dev/valid-attachments" (GC).
 * Unknown fields are ignored. Every refusal is a cni_error with the
 * specification's code (4: environment, 6: not JSON, 7: configuration,
 * 1: version) and a message naming the field and what would be right.
 *
 * Ownership: parsed structures own their strings; free with cni_env_free /
 * cni_conf_free (both accept a zeroed struct). Threading: none.
 */
#ifndef PROVISIO_CNI_CONFIG_H
#define PROVISIO_CNI_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

#include "cni_error.h"

/* The versions this plugin speaks, oldest first; results follow the asked one. */
#define CNI_VERSION_LATEST "1.1.0"
extern const char *const cni_supported_versions[];
extern const size_t cni_supported_versions_n;

/* At most this many pools (one per address family, and a spare). */
#define CNI_MAX_POOLS 2
/* Largest configuration read from stdin. */
#define CNI_MAX_CONFIG_BYTES (1024 * 1024)

#define CNI_DEFAULT_TIMEOUT_S 10.0
#define CNI_DEFAULT_REQUEST_TIMEOUT_S 5.0

typedef enum cni_command {
    CNI_CMD_ADD,
    CNI_CMD_DEL,
    CNI_CMD_CHECK,
    CNI_CMD_STATUS,
    CNI_CMD_GC,
    CNI_CMD_VERSION,
} cni_command;

/* "ADD", "DEL", ... */
const char *cni_command_name(cni_command c);

typedef struct cni_env {
    cni_command command;
    char *container_id;  /* CNI_CONTAINERID; NULL for STATUS, GC, VERSION */
    char *ifname;        /* CNI_IFNAME; NULL for STATUS, GC, VERSION */
    char *netns;         /* CNI_NETNS or NULL */
    char *pod_namespace; /* K8S_POD_NAMESPACE of CNI_ARGS, or NULL */
    char *pod_name;      /* K8S_POD_NAME, or NULL */
    char *pod_uid;       /* K8S_POD_UID, or NULL */
} cni_env;

/*
 * Parse the environment envp (environ's shape: "NAME=value" strings, NULL
 * at the end; borrowed); the first of duplicate names counts, as for
 * getenv. Returns 0, or -CNI_ERR_INVALID_ENV with err set; *out is then
 * zeroed. CNI_ARGS values are checked as Kubernetes names (namespace: DNS
 * label; pod name: DNS subdomain; uid: hex digits and '-').
 */
int cni_env_parse(char *const *envp, cni_env *out, cni_error *err);
void cni_env_free(cni_env *e);

/* One entry of "cni.dev/valid-attachments" (GC). */
typedef struct cni_attachment {
    char *container_id;
    char *ifname;
} cni_attachment;

typedef struct cni_conf {
    char *cni_version; /* as given (one of cni_supported_versions) */
    int version;       /* index into cni_supported_versions */
    char *name;        /* the network name ("name") */
    char *pools[CNI_MAX_POOLS];
    size_t n_pools;           /* 1..CNI_MAX_POOLS, distinct DNS labels */
    char *kubeconfig;         /* NULL: KUBECONFIG, in-cluster, ~/.kube/config */
    char *network;            /* ipam.network or NULL */
    char *namespace_;         /* ipam.namespace or NULL */
    char *node_name;          /* ipam.nodeName or NULL */
    double timeout_s;         /* > 0 */
    double request_timeout_s; /* > 0 */
    json_object *prev_result; /* owned reference (CHECK), or NULL */
    cni_attachment *valid;    /* GC: the attachments to keep */
    size_t n_valid;
} cni_conf;

/*
 * Parse the configuration data[0..len) (borrowed, need not be NUL-terminated)
 * for command cmd. VERSION takes empty input or any JSON object (the answer
 * lists every supported version whatever the runtime speaks);
 * STATUS needs no container; CHECK needs prevResult (cniVersion 0.4.0 or
 * later); STATUS and GC need cniVersion 1.1.0; GC needs
 * cni.dev/valid-attachments. Returns 0, or a negated code with err set
 * (then *out is zeroed).
 */
int cni_conf_parse(const char *data, size_t len, cni_command cmd, cni_conf *out, cni_error *err);
void cni_conf_free(cni_conf *c);

/* Index of version in cni_supported_versions, or -1. */
int cni_version_index(const char *version);

/* True when s is a DNS label (RFC 1123: [a-z0-9]([-a-z0-9]*[a-z0-9])?, <= 63). */
bool cni_is_dns_label(const char *s);

#endif
