/*
 * kc_discovery - what resource types the API server serves, and resolving a
 * name a person types ("po", "leases.coordination.k8s.io", "apps/v1/deployments")
 * to the group, version and plural resource a kc_ref needs, as kubectl does.
 *
 * The documents are the API server's own discovery answers:
 *   /api/v1              APIResourceList of the core group
 *   /apis                APIGroupList (groups, their versions, the preferred one)
 *   /apis/<group>/<ver>  APIResourceList of one group version
 * kc_discovery_add_* take them as text, so resolution is tested with recorded
 * documents; kc_discovery_load fetches them through a caller's function and
 * kc_discovery_fetch through a kc_client.
 *
 * Forms understood by kc_discovery_resolve (case-insensitive):
 *   "pods", "pod", "Pod", "po"     plural, singular, kind or short name
 *   "leases.coordination.k8s.io"   resource.group
 *   "deployments.v1.apps"          resource.version.group
 *   "apps/v1/deployments"          group/version/resource
 *   "v1/pods", "/v1/pods"          core version/resource
 * The resource part of a qualified form may itself be a singular, kind or
 * short name ("deploy.apps"). Matching prefers plural over singular over short
 * name over kind; within a group the preferred version is tried first, then the
 * others in the server's order. The core group wins over every other group
 * (a CRD cannot shadow "pods"); when several other groups match equally well
 * the name is ambiguous and refused with the candidates listed. Subresources
 * ("pods/status") are not resource types and are never matched.
 *
 * Threading: a kc_discovery is built on one thread; once built, resolve may be
 * called from any number of threads (it only reads).
 */
#ifndef PROVISIO_KC_DISCOVERY_H
#define PROVISIO_KC_DISCOVERY_H

#include <stdbool.h>
#include <stddef.h>

#include "kc_client.h"
#include "kc_error.h"

typedef struct kc_discovery kc_discovery;

/*
 * One resource type. It and its strings are owned by the kc_discovery: valid
 * until kc_discovery_free, or until its group version's list is replaced.
 */
typedef struct kc_discovery_resource {
    const char *group;    /* "" for the core group */
    const char *version;  /* "v1", "v1alpha1" */
    const char *resource; /* plural: "pods", "ippools" */
    const char *kind;     /* "Pod", "IPPool" */
    bool namespaced;
} kc_discovery_resource;

/* An empty catalogue; NULL when out of memory. */
kc_discovery *kc_discovery_new(void);
void kc_discovery_free(kc_discovery *d);

/*
 * Add an APIGroupList (the /apis document; json is borrowed, len bytes). May be
 * called more than once: a group already known gains the versions it lacked. Group and version
 * names that are not DNS-like are refused (they would become URL paths).
 * KC_ERR_DECODE when the document is not an APIGroupList.
 */
int kc_discovery_add_group_list(kc_discovery *d, const char *json, size_t len, kc_error *err);

/*
 * Add an APIResourceList (/api/v1 or /apis/<group>/<version>); its
 * groupVersion field says which. A group version not announced by a group
 * list is added as a group of its own (the core group always exists).
 * Replaces an earlier list of the same group version. KC_ERR_DECODE when the
 * document is not an APIResourceList.
 */
int kc_discovery_add_resource_list(kc_discovery *d, const char *json, size_t len, kc_error *err);

/*
 * How kc_discovery_load gets one document: GET path, put the malloc'd body
 * (caller of the function frees it) in *body and its length in *len; return
 * KC_OK or a kc_status with err set.
 */
typedef int (*kc_discovery_get_fn)(void *user, const char *path, char **body, size_t *len,
                                   kc_error *err);

/*
 * Fetch /api/v1, /apis and the resource list of every version of every group,
 * as kubectl does. A group version whose list fails with an API error or does
 * not decode (an aggregated API that is down) is remembered and skipped, and
 * named in resolve's "not found" message; a failure of /api/v1 or /apis, and
 * out-of-memory, transport or timeout errors, end the load with that status.
 */
int kc_discovery_load(kc_discovery *d, kc_discovery_get_fn get, void *user, kc_error *err);

/* kc_discovery_load through kc_request_raw GETs on c (borrowed). Same thread rules as load. */
int kc_discovery_fetch(kc_discovery *d, kc_client *c, kc_error *err);

/*
 * Resolve name (borrowed; see the forms above). On success *out points into d
 * (see kc_discovery_resource for how long); on failure it is NULL.
 * KC_ERR_NOT_FOUND: no such resource type (the message says so as kubectl
 * does, and names group versions whose discovery failed);
 * KC_ERR_INVALID_ARG: an empty or malformed name, or an ambiguous one (the
 * message lists the candidates as resource.group).
 */
int kc_discovery_resolve(const kc_discovery *d, const char *name, const kc_discovery_resource **out,
                         kc_error *err);

/*
 * Fill ref for res (borrowed strings from res and the arguments): group,
 * version, resource, and namespace_ only when the resource is namespaced.
 */
void kc_discovery_ref(const kc_discovery_resource *res, const char *namespace_, const char *name,
                      kc_ref *ref);

#endif
