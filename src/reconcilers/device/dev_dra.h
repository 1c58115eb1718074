/*
 * dev_dra - DevicePools with spec.publish: ResourceSlice, published for
 * Dynamic Resource Allocation (resource.k8s.io/v1): the pool's devices as
 * ResourceSlices of the driver provisio.dev, and one ResourceClaim per Ready
 * DeviceClaim, allocated by the operator to exactly the claim's devices
 * (dev_dra.c says how and why that is safe).
 */
#ifndef PROVISIO_DEV_DRA_H
#define PROVISIO_DEV_DRA_H

#include <json-c/json.h>

#include "controller.h"
#include "rec_env.h"

#define DEV_DRA_DRIVER "provisio.dev"
#define DEV_DRA_CLASS "provisio.dev"                     /* config/dra/deviceclass.yaml */
#define DEV_DRA_TAINT_MANAGED "provisio.dev/managed"     /* NoSchedule, on every device */
#define DEV_DRA_TAINT_UNHEALTHY "provisio.dev/unhealthy" /* NoExecute, unhealthy ones */
#define DEV_DRA_SLICE_MAX 128                            /* devices per ResourceSlice (API limit) */

typedef struct dev_dra dev_dra;

/* Register the "deviceslice" and "deviceresourceclaim" controllers and their
 * informers with the manager (which frees it all). */
int dev_dra_setup(const rec_env *env, const kc_ref *pools_ref, const kc_ref *claims_ref,
                  dev_dra **out);

/* rec_domain_def.claim_release_gate: a DeviceClaim's devices are released
 * only once its ResourceClaim is gone (deallocated by kube-controller-manager
 * when no pod reserves it any more). */
ctl_result dev_dra_release_gate(dev_dra *dra, json_object *claim_obj);

/* The ResourceSlice name of part i of pool (malloc'd) or NULL. */
char *dev_dra_slice_name(const char *pool, size_t i);

/* Whether key can be a DRA attribute name: an optional DNS subdomain and '/',
 * then a C identifier of at most 32 characters. */
bool dev_dra_attr_name_ok(const char *key);

#endif
