/*
 * vol_pool - what the operator makes of a StoragePool: its quota mode, the
 * node agent's report (status.agent), the Ready condition and the status it
 * writes (API.md "Volumes"). Pure: no requests; the caller brings the time,
 * whether the node exists, the ledger (vol_ledger.h) and the number of
 * volumes held.
 */
#ifndef PROVISIO_VOL_POOL_H
#define PROVISIO_VOL_POOL_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <json-c/json.h>

#include "vol_ledger.h"

#define VOL_AGENT_STALE 120 /* s: an older report counts as none (AgentNotReporting) */

#define VOL_REASON_READY "PathReady"
#define VOL_REASON_PATH_NOT_FOUND "PathNotFound"
#define VOL_REASON_NOT_WRITABLE "NotWritable"
#define VOL_REASON_AGENT "AgentNotReporting"
#define VOL_REASON_QUOTA "QuotaUnsupported"
#define VOL_REASON_NODE "NodeNotFound"
#define VOL_REASON_NODE_NOT_READY "NodeNotReady"
#define VOL_REASON_INVALID "InvalidSpec"

typedef enum vol_quota_mode { VOL_QUOTA_AUTO, VOL_QUOTA_REQUIRED, VOL_QUOTA_OFF } vol_quota_mode;

/* spec.quota (absent: Auto, the CRD's default). */
vol_quota_mode vol_pool_quota_mode(json_object *pool);

/* The node agent's report, borrowed from the pool object it was read from. */
typedef struct vol_agent_report {
    bool fresh;    /* heartbeatTime within VOL_AGENT_STALE of now */
    bool current;  /* observedGeneration is the pool's generation */
    bool present;  /* spec.path is a directory on the node */
    bool writable; /* a file could be made and removed there */
    bool quota_supported;
    bool has_used; /* used_bytes was reported */
    int64_t used_bytes;
    const char *filesystem;    /* may be NULL */
    const char *quota_message; /* why quotas are not supported; may be NULL */
    const char *message;       /* what is wrong with the path; may be NULL */
} vol_agent_report;

/* status.agent of pool at time now; all false when there is none. */
void vol_pool_report(json_object *pool, time_t now, vol_agent_report *out);

/* The pool's node as the Node object says. */
typedef enum vol_node_state {
    VOL_NODE_MISSING,   /* no Node of spec.nodeName */
    VOL_NODE_NOT_READY, /* its Ready condition is not True (a stopped kubelet) */
    VOL_NODE_READY,
} vol_node_state;

/* The state of node (NULL: missing) from its Ready condition. */
vol_node_state vol_node_state_of(json_object *node);

/*
 * The Ready condition: "True" with VOL_REASON_READY, or "False" with the
 * first of NodeNotFound, NodeNotReady, AgentNotReporting (no fresh report
 * of this generation), PathNotFound, NotWritable, QuotaUnsupported
 * (spec.quota Required on a filesystem without quotas). *message is
 * malloc'd (a sentence for a person naming the node and path). 0 or
 * -ENOMEM.
 */
int vol_pool_readiness(json_object *pool, vol_node_state node, const vol_agent_report *r,
                       const char **cond_status, const char **reason, char **message);

/* status.quota: "Off" (spec), "Enforced" or "Unsupported" (the agent's
 * report), or NULL while no fresh report says. */
const char *vol_pool_quota_status(vol_quota_mode mode, const vol_agent_report *r);

/*
 * The status to write: a copy of cached_status (borrowed; NULL: none) with
 * observedGeneration, the ledger's fields (vol_ledger_write: nothing of an
 * unknown ledger, so a recount must come first), volumes, usedBytes and
 * quota from the report (absent when unknown) and the Ready condition
 * (lastTransitionTime kept while its status does not change). *out is a new
 * object (owned). 0 or -ENOMEM.
 */
int vol_pool_status(json_object *cached_status, const vol_ledger *l, int64_t volumes,
                    const vol_agent_report *r, vol_quota_mode mode, const char *cond_status,
                    const char *reason, const char *message, int64_t generation, time_t now,
                    json_object **out);

#endif
