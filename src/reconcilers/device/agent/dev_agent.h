/*
 * dev_agent - the node agent's half of the device domain (API.md "Devices",
 * "The node agent"): for every DevicePool of its node it checks the device
 * files on the node and writes what it found to status.agent, which only the
 * agent writes and the operator reads. README.md in this folder says how.
 */
#ifndef PROVISIO_DEV_AGENT_H
#define PROVISIO_DEV_AGENT_H

#include "rec_env.h"

/*
 * Register the devicepools informer of env->node_name (a field selector on
 * spec.nodeName) and the "devicepool-agent" controller with the manager.
 * Needs env->node_name and env->host_root (the agent's flags). Main thread,
 * once. 0 or a negative kc_status (KC_ERR_INVALID_ARG without a node name).
 */
int dev_agent_setup(const rec_env *env);

#endif
