/*
 * dev_status - the status of DeviceClaims and DevicePools (API.md
 * "Devices"), built from what is held and from the pool's health; and the
 * messages a person reads in them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dev_internal.h"
#include "kc_error.h"
#include "pv_json.h"
#include "pv_strbuf.h"
#include "rec_util.h"

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int dev_status_slots(json_object *status, char ***slots, size_t *n)
{
    *slots = NULL;
    *n = 0;
    json_object *devs = rec_obj_at(status, "devices");
    size_t len =
        devs && json_object_is_type(devs, json_type_array) ? json_object_array_length(devs) : 0;
    if (len == 0)
        return KC_OK;
    char **v = calloc(len, sizeof *v);
    if (!v)
        return KC_ERR_NOMEM;
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        json_object *e = json_object_array_get_idx(devs, i);
        if (!json_object_is_type(e, json_type_string))
            continue;
        if (!(v[k] = strdup(json_object_get_string(e)))) {
            for (size_t j = 0; j < k; j++)
                free(v[j]);
            free(v);
            return KC_ERR_NOMEM;
        }
        k++;
    }
    *slots = v;
    *n = k;
    if (k == 0) {
        free(v);
        *slots = NULL;
    }
    return KC_OK;
}

char *dev_status_slot(json_object *status)
{
    char **v = NULL;
    size_t n = 0;
    if (dev_status_slots(status, &v, &n) != KC_OK || n == 0)
        return NULL;
    char *first = v[0];
    for (size_t i = 1; i < n; i++)
        free(v[i]);
    free(v);
    return first;
}

int dev_status_claim_ready(json_object *cached_status, const char *pool_name, json_object *pool_obj,
                           const void *pool, const void *want, const char *const *slots, size_t n,
                           int64_t generation, time_t now, json_object **out, char **event)
{
    (void)want;
    *out = NULL;
    *event = NULL;
    const dev_pool *p = pool;
    const char **ids = n ? malloc(n * sizeof *ids) : NULL;
    if (n && !ids)
        return KC_ERR_NOMEM;
    if (n)
        memcpy(ids, slots, n * sizeof *ids);
    qsort(ids, n, sizeof *ids, str_cmp);
    json_object *st = NULL;
    int rc = rec_status_base(cached_status, &st);
    if (rc != KC_OK) {
        free(ids);
        return rc;
    }
    const char *node = p ? p->node : rec_obj_str(pool_obj, "spec.nodeName");
    if (!node)
        node = rec_obj_str(cached_status, "nodeName");
    bool ok =
        pv_json_add_str(st, "pool", pool_name) && (!node || pv_json_add_str(st, "nodeName", node));
    /* The ResourceClaim's name is written by dev_dra.c: kept while the pool
     * publishes ResourceSlices. */
    const char *rcn = rec_obj_str(cached_status, "resourceClaimName");
    if (ok && rcn && p && p->publish == DEV_PUBLISH_RESOURCE_SLICE)
        ok = pv_json_add_str(st, "resourceClaimName", rcn);
    json_object *arr = ok ? json_object_new_array_ext((int)n) : NULL;
    ok = ok && arr && pv_json_add(st, "devices", arr);
    pv_strbuf list = {0}, sick = {0};
    for (size_t i = 0; i < n && ok; i++) {
        ok = json_object_array_add(arr, json_object_new_string(ids[i])) == 0;
        pv_strbuf_addf(&list, "%s%s", i ? ", " : "", ids[i]);
        const dev_device *d = p ? dev_pool_find(p, ids[i]) : NULL;
        if (p && !d)
            pv_strbuf_addf(&sick, "%s%s is no longer in the pool", sick.len ? "; " : "", ids[i]);
        else if (d && !d->healthy)
            pv_strbuf_addf(&sick, "%s%s is unhealthy (%s)", sick.len ? "; " : "", ids[i],
                           d->message ? d->message : "unknown");
    }
    ok = ok && !list.oom && !sick.oom;
    char *msg = NULL, *hmsg = NULL;
    if (ok)
        ok = rec_msg(&msg, "Allocated %s of DevicePool %s on node %s", list.p ? list.p : "",
                     pool_name, node ? node : "(unknown)") == KC_OK;
    if (ok)
        rc = rec_set_condition(st, REC_COND_READY, REC_COND_TRUE, DEV_REASON_ALLOCATED, msg,
                               generation, now, NULL);
    else
        rc = KC_ERR_NOMEM;
    if (rc == KC_OK) {
        if (sick.len)
            rc = rec_msg(&hmsg, "%s", sick.p);
        else
            rc = rec_msg(&hmsg, "every device held is healthy");
    }
    if (rc == KC_OK)
        rc = rec_set_condition(st, DEV_COND_HEALTHY, sick.len ? REC_COND_FALSE : REC_COND_TRUE,
                               sick.len ? DEV_REASON_UNHEALTHY : DEV_REASON_HEALTHY, hmsg,
                               generation, now, NULL);
    if (rc == KC_OK && !(*event = strdup(msg)))
        rc = KC_ERR_NOMEM;
    free(msg);
    free(hmsg);
    pv_strbuf_free(&list);
    pv_strbuf_free(&sick);
    free(ids);
    if (rc != KC_OK) {
        json_object_put(st);
        return rc;
    }
    *out = st;
    return KC_OK;
}

static bool add_devices(json_object *st, const dev_detail *dt)
{
    json_object *arr = json_object_new_array_ext((int)dt->n);
    if (!arr || !pv_json_add(st, "devices", arr))
        return false;
    for (size_t i = 0; i < dt->n; i++) {
        const dev_detail_dev *e = &dt->devs[i];
        json_object *o = json_object_new_object();
        if (!o || json_object_array_add(arr, o) != 0) {
            json_object_put(o);
            return false;
        }
        if (!pv_json_add_str(o, "id", e->id) ||
            !pv_json_add(o, "healthy", json_object_new_boolean(e->healthy)) ||
            !pv_json_add_str(o, "source", e->discovered ? "Discovered" : "Declared") ||
            (e->holder && !pv_json_add_str(o, "claim", e->holder)) ||
            (e->message && !pv_json_add_str(o, "message", e->message)))
            return false;
    }
    return true;
}

int dev_status_pool(json_object *cached_status, const rec_pool_counts *counts,
                    const char *cond_status, const char *reason, const char *message,
                    int64_t generation, time_t now, json_object **out)
{
    *out = NULL;
    const dev_detail *dt = counts->detail;
    json_object *st = NULL;
    int rc = rec_status_base(cached_status, &st);
    if (rc != KC_OK)
        return rc;
    /* The node agent's report is its own: carried over as it is. */
    json_object *agent = rec_obj_at(cached_status, "agent");
    bool ok = (!agent || rec_put_copy(st, "agent", agent)) &&
              pv_json_add_i64(st, "capacity", counts->total) &&
              pv_json_add_i64(st, "allocated", counts->allocated) &&
              pv_json_add_i64(st, "available", counts->available) &&
              pv_json_add_i64(st, "unhealthy", dt ? dt->unhealthy : 0) &&
              (!dt || pv_json_add_str(st, "publish", dev_publish_name(dt->publish))) &&
              (!dt || add_devices(st, dt));
    rc = ok ? rec_set_condition(st, REC_COND_READY, cond_status, reason, message, generation, now,
                                NULL)
            : KC_ERR_NOMEM;
    if (rc == KC_OK && dt && dt->wants_agent)
        rc = rec_set_condition(st, DEV_COND_AGENT, dt->agent_fresh ? REC_COND_TRUE : REC_COND_FALSE,
                               dt->agent_fresh ? DEV_REASON_REPORTING : DEV_REASON_NO_AGENT,
                               dt->agent_fresh
                                   ? "the node agent reports this pool's device files"
                                   : "no node agent on the pool's node has reported in the last 2 "
                                     "minutes: declared devices are used as declared, nothing is "
                                     "discovered (is the provisio-agent DaemonSet running there?)",
                               generation, now, NULL);
    else if (rc == KC_OK && dt)
        rc = rec_remove_condition(st, DEV_COND_AGENT, NULL);
    if (rc != KC_OK) {
        json_object_put(st);
        return rc;
    }
    *out = st;
    return KC_OK;
}

bool dev_status_pool_counts_only(json_object *cached_status, json_object *new_status)
{
    static const char *const moved[] = {"allocated", "available", "devices"};
    static const char *const holder[] = {"claim"};
    if (!rec_json_equal_except(cached_status, new_status, moved, 3))
        return false;
    /* The same devices in the same order; only who holds them may differ. */
    json_object *a = rec_obj_at(cached_status, "devices");
    json_object *b = rec_obj_at(new_status, "devices");
    if (!a || !b || !json_object_is_type(a, json_type_array) ||
        !json_object_is_type(b, json_type_array))
        return !a && !b;
    size_t n = json_object_array_length(a);
    if (json_object_array_length(b) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!rec_json_equal_except(json_object_array_get_idx(a, i), json_object_array_get_idx(b, i),
                                   holder, 1))
            return false;
    return true;
}

/* The agent's devices changed, or its report went stale or fresh. */
bool dev_pool_changed(json_object *old_obj, json_object *new_obj)
{
    json_object *a = rec_obj_at(old_obj, "status.agent.devices");
    json_object *b = rec_obj_at(new_obj, "status.agent.devices");
    if (!a != !b || (a && !json_object_equal(a, b)))
        return true;
    /* status.conditions AgentReporting flips when the report goes stale */
    json_object *ca = rec_get_condition(rec_obj_at(old_obj, "status"), DEV_COND_AGENT);
    json_object *cb = rec_get_condition(rec_obj_at(new_obj, "status"), DEV_COND_AGENT);
    const char *sa = ca ? rec_obj_str(ca, "status") : NULL;
    const char *sb = cb ? rec_obj_str(cb, "status") : NULL;
    return (sa ? strcmp(sa, sb ? sb : "") : sb != NULL) != 0;
}
