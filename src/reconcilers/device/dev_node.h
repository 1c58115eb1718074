/*
 * dev_node - the "devicenode" controller: node status.capacity and
 * status.allocatable of the extended resources of NodeCapacity DevicePools
 * (dev_node.c says how), and the hooks the device domain gives the core.
 */
#ifndef PROVISIO_DEV_NODE_H
#define PROVISIO_DEV_NODE_H

#include <json-c/json.h>

#include "controller.h"
#include "rec_env.h"

typedef struct dev_node dev_node;

/* Register the controller, the nodes informer and the pools index with the
 * manager (which frees it all at shutdown). *out for the hooks below. */
int dev_node_setup(const rec_env *env, const kc_ref *pools_ref, dev_node **out);

/* rec_domain_def.pool_finalize: take the pool's resource off its node unless
 * another live pool of the node publishes it. */
ctl_result dev_node_pool_finalize(void *user, json_object *pool_obj);

/* rec_domain_def.pool_check: NodeNotFound while spec.nodeName is no node. */
int dev_node_pool_check(void *user, json_object *pool_obj, const void *pool, const char **reason,
                        char **message);

#endif
