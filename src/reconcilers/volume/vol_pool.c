/*
 * vol_pool - the operator's reading of a StoragePool (vol_pool.h).
 *
 * The agent's report is trusted only while it is fresh (a heartbeat within
 * VOL_AGENT_STALE) and about the current spec (observedGeneration): a path
 * checked before spec.path changed says nothing about the new one. The
 * status is rebuilt from the cached one, keeping what others own (the
 * agent's report) and the conditions' transition times.
 */
#include "vol_pool.h"

#include "kc_error.h"
#include "pv_json.h"
#include "rec_util.h"

#include <stdlib.h>
#include <string.h>

vol_quota_mode vol_pool_quota_mode(json_object *pool)
{
    const char *q = rec_obj_str(pool, "spec.quota");
    if (q && !strcmp(q, "Required"))
        return VOL_QUOTA_REQUIRED;
    if (q && !strcmp(q, "Off"))
        return VOL_QUOTA_OFF;
    return VOL_QUOTA_AUTO;
}

static bool get_bool(json_object *o, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_boolean) &&
           json_object_get_boolean(v);
}

void vol_pool_report(json_object *pool, time_t now, vol_agent_report *out)
{
    memset(out, 0, sizeof *out);
    json_object *a = rec_obj_at(pool, "status.agent");
    if (!json_object_is_type(a, json_type_object))
        return;
    time_t hb;
    out->fresh = rec_parse_time(rec_obj_str(a, "heartbeatTime"), &hb) &&
                 now - hb <= VOL_AGENT_STALE && hb - now <= VOL_AGENT_STALE;
    json_object *gen = rec_obj_at(a, "observedGeneration");
    out->current = json_object_is_type(gen, json_type_int) &&
                   json_object_get_int64(gen) == rec_obj_generation(pool);
    out->present = get_bool(a, "present");
    out->writable = get_bool(a, "writable");
    out->quota_supported = get_bool(a, "quotaSupported");
    json_object *used = rec_obj_at(a, "usedBytes");
    if (json_object_is_type(used, json_type_int) && json_object_get_int64(used) >= 0) {
        out->has_used = true;
        out->used_bytes = json_object_get_int64(used);
    }
    out->filesystem = rec_obj_str(a, "filesystem");
    out->quota_message = rec_obj_str(a, "quotaMessage");
    out->message = rec_obj_str(a, "message");
}

/* ": why" when the agent said why, else "". */
static const char *sep(const char *why)
{
    return why && *why ? ": " : "";
}

static const char *text(const char *why)
{
    return why && *why ? why : "";
}

vol_node_state vol_node_state_of(json_object *node)
{
    if (!node)
        return VOL_NODE_MISSING;
    json_object *ready = rec_get_condition(rec_obj_at(node, "status"), REC_COND_READY);
    const char *status = ready ? rec_obj_str(ready, "status") : NULL;
    return status && !strcmp(status, REC_COND_TRUE) ? VOL_NODE_READY : VOL_NODE_NOT_READY;
}

int vol_pool_readiness(json_object *pool, vol_node_state node_state, const vol_agent_report *r,
                       const char **cond_status, const char **reason, char **message)
{
    const char *node = rec_obj_str(pool, "spec.nodeName");
    const char *path = rec_obj_str(pool, "spec.path");
    node = node ? node : "?";
    path = path ? path : "?";
    *cond_status = REC_COND_FALSE;
    *message = NULL;
    if (node_state == VOL_NODE_MISSING) {
        *reason = VOL_REASON_NODE;
        return rec_msg(message, "node %s does not exist: no agent can make volumes in %s", node,
                       path);
    }
    if (node_state == VOL_NODE_NOT_READY) {
        *reason = VOL_REASON_NODE_NOT_READY;
        return rec_msg(message,
                       "node %s is not Ready: the volumes in %s stay where they are, and no new "
                       "one is placed there until the node is back",
                       node, path);
    }
    if (!r->fresh || !r->current) {
        *reason = VOL_REASON_AGENT;
        return rec_msg(message,
                       "no report from the node agent on %s about %s%s in the last %d s: is "
                       "the provisio-agent DaemonSet running there?",
                       node, path, r->fresh ? " since its spec changed" : "", VOL_AGENT_STALE);
    }
    if (!r->present) {
        *reason = VOL_REASON_PATH_NOT_FOUND;
        return rec_msg(message, "%s is not a directory on node %s%s%s", path, node, sep(r->message),
                       text(r->message));
    }
    if (!r->writable) {
        *reason = VOL_REASON_NOT_WRITABLE;
        return rec_msg(message, "the node agent cannot write in %s on node %s%s%s", path, node,
                       sep(r->message), text(r->message));
    }
    if (vol_pool_quota_mode(pool) == VOL_QUOTA_REQUIRED && !r->quota_supported) {
        *reason = VOL_REASON_QUOTA;
        return rec_msg(message,
                       "spec.quota is Required but %s on node %s cannot limit directories%s%s "
                       "(use XFS or ext4 with project quotas, or btrfs; or set spec.quota to "
                       "Auto)",
                       path, node, sep(r->quota_message), text(r->quota_message));
    }
    *cond_status = REC_COND_TRUE;
    *reason = VOL_REASON_READY;
    return rec_msg(message, "%s on node %s is present and writable%s%s", path, node,
                   r->filesystem && *r->filesystem ? " on " : "", text(r->filesystem));
}

const char *vol_pool_quota_status(vol_quota_mode mode, const vol_agent_report *r)
{
    if (mode == VOL_QUOTA_OFF)
        return "Off";
    if (!r->fresh || !r->current || !r->present)
        return NULL;
    return r->quota_supported ? "Enforced" : "Unsupported";
}

int vol_pool_status(json_object *cached_status, const vol_ledger *l, int64_t volumes,
                    const vol_agent_report *r, vol_quota_mode mode, const char *cond_status,
                    const char *reason, const char *message, int64_t generation, time_t now,
                    json_object **out)
{
    *out = NULL;
    json_object *st = NULL;
    int rc = rec_status_base(cached_status, &st);
    if (rc != KC_OK)
        return rc;
    /* The agent's report is its own; the ledger's fields are rewritten
     * below only when known (an unknown ledger keeps nothing). */
    json_object *agent = rec_obj_at(cached_status, "agent");
    const char *quota = vol_pool_quota_status(mode, r);
    bool ok = (!agent || rec_put_copy(st, "agent", agent)) &&
              pv_json_add_i64(st, "observedGeneration", generation) &&
              pv_json_add_i64(st, "volumes", volumes) && pv_json_add_str(st, "quota", quota) &&
              (!r->has_used || !r->fresh || pv_json_add_i64(st, "usedBytes", r->used_bytes));
    rc = ok ? vol_ledger_write(l, st) : KC_ERR_NOMEM;
    if (rc == KC_OK)
        rc = rec_set_condition(st, REC_COND_READY, cond_status, reason, message, generation, now,
                               NULL);
    if (rc != KC_OK) {
        json_object_put(st);
        return rc;
    }
    *out = st;
    return KC_OK;
}
