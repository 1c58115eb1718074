/*
 * cni_names - the names and labels provisio-cni gives its IPClaims.
 *
 * An attachment (network name, container id, interface) has one claim per
 * configured pool, named "cni-" + the first 24 hex digits of
 * SHA-256(network "\0" container id "\0" ifname), with "-1" appended for the
 * second pool. The name is a pure function of the attachment, so a retried
 * ADD finds the claim of the first, DEL needs no state on the node, and GC
 * tells a stale claim from a valid one by name alone. 96 bits keep a
 * collision out of reach for any number of pods a cluster can run.
 *
 * Label values must be at most 63 characters of [A-Za-z0-9_.-], starting
 * and ending with a letter or digit. Container ids (64 hex digits under
 * containerd) and some network names do not fit: cni_names_label_value
 * keeps a value that fits and otherwise makes one (container ids keep their
 * first 63 characters instead) ("h" + 24 hex digits of
 * its SHA-256; the full value is kept in an annotation).
 *
 * Threading: pure functions, any thread.
 */
#ifndef PROVISIO_CNI_NAMES_H
#define PROVISIO_CNI_NAMES_H

#include <stdbool.h>
#include <stddef.h>

/* "cni-" + 24 hex digits (the base), "-N" for pool N >= 1, and the NUL. */
#define CNI_NAMES_BASE_LEN 28
#define CNI_NAMES_CLAIM_MAX 40

/* Labels and annotations of a provisio-cni claim. */
#define CNI_LABEL_NODE "provisio.dev/cni-node"
#define CNI_LABEL_CNI_NETWORK "provisio.dev/cni-network"
#define CNI_LABEL_CONTAINER "provisio.dev/cni-container-id"
#define CNI_LABEL_NETWORK "provisio.dev/network"
#define CNI_LABEL_MANAGED_BY "app.kubernetes.io/managed-by"
#define CNI_MANAGED_BY "provisio-cni"
#define CNI_ANN_CONTAINER "provisio.dev/cni-container-id"
#define CNI_ANN_IFNAME "provisio.dev/cni-ifname"
#define CNI_ANN_CNI_NETWORK "provisio.dev/cni-network-name"

/*
 * Write the claim name of (network, container_id, ifname) for pool index
 * pool (0 or 1; see above) into out (CNI_NAMES_CLAIM_MAX bytes). Strings
 * borrowed. Returns false only when the hash cannot be computed (OpenSSL out
 * of memory).
 */
bool cni_names_claim(const char *network, const char *container_id, const char *ifname, size_t pool,
                     char out[CNI_NAMES_CLAIM_MAX]);

/* True when s may be a label value as it is. */
bool cni_names_is_label_value(const char *s);

/*
 * A label value for s (borrowed): s itself when it fits, else "h" + 24 hex
 * digits of SHA-256(s). out has 64 bytes. Returns false as cni_names_claim.
 */
bool cni_names_label_value(const char *s, char out[64]);

/*
 * The label value of a container id (borrowed): the id when it fits, else
 * its first 63 characters (ids are hex: a prefix still finds the claim with
 * `kubectl get ipc -l`, as `docker ps` shows 12), else the hash form.
 */
bool cni_names_container_label(const char *container_id, char out[64]);

#endif
