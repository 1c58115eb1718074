/*
 * vol_node - the node agent's volume half that talks to the API server: the
 * "storagepool-agent" controller (path checks, status.agent of its node's
 * StoragePools) and the "volume-agent" controller (a directory with its
 * hard limit for each storage Reservation of its node, removed before the
 * Reservation's finalizer goes). vol_node.c says how; vol_agent.h is the
 * node-side work it calls.
 */
#ifndef PROVISIO_VOL_NODE_H
#define PROVISIO_VOL_NODE_H

#include "rec_env.h"

/* Register the informers and both controllers (agent mode: env->node_name
 * and env->host_root set). Main thread, once. 0 or a negative kc_status. */
int vol_node_setup(const rec_env *env);

#endif
