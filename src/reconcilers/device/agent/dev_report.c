/*
 * dev_report - a scan's report against the status.agent the cache holds:
 * whether it must be written (a change, or the heartbeat is due) and the
 * merge patch that writes it. The patch names status.agent only, so the
 * operator's fields of the status (counts, devices, conditions) are never
 * touched, and it carries no resourceVersion: the agent is the only writer
 * of status.agent, so there is nothing to conflict with.
 */
#include "dev_agent_internal.h"
#include "kc_error.h"
#include "pv_json.h"
#include "rec_util.h"

#include <stdlib.h>
#include <string.h>

/* A member of a (possibly shared) object, NULL when absent. */
static json_object *member(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (o == NULL || !json_object_is_type(o, json_type_object) ||
        !json_object_object_get_ex(o, key, &v))
        return NULL;
    return v;
}

static bool str_is(json_object *o, const char *key, const char *want)
{
    json_object *v = member(o, key);
    if (v == NULL || json_object_is_type(v, json_type_null))
        return want == NULL || want[0] == '\0';
    if (!json_object_is_type(v, json_type_string) || want == NULL)
        return false;
    return strcmp(json_object_get_string(v), want) == 0;
}

static bool entry_matches(const dev_entry *e, json_object *d)
{
    json_object *present = member(d, "present");
    return str_is(d, "id", e->id) && str_is(d, "path", e->path) &&
           str_is(d, "source", e->discovered ? DEV_SOURCE_DISCOVERED : DEV_SOURCE_DECLARED) &&
           present != NULL && json_object_is_type(present, json_type_boolean) &&
           json_object_get_boolean(present) == e->present && str_is(d, "message", e->message);
}

bool dev_report_matches(const dev_report *r, json_object *agent)
{
    if (agent == NULL || !json_object_is_type(agent, json_type_object))
        return false;
    json_object *gen = member(agent, "observedGeneration");
    if (gen == NULL || !json_object_is_type(gen, json_type_int) ||
        json_object_get_int64(gen) != r->observed_generation)
        return false;
    json_object *devices = member(agent, "devices");
    if (devices == NULL || json_object_is_type(devices, json_type_null))
        return r->n == 0;
    if (!json_object_is_type(devices, json_type_array) || json_object_array_length(devices) != r->n)
        return false;
    for (size_t i = 0; i < r->n; i++)
        if (!entry_matches(&r->v[i], json_object_array_get_idx(devices, i)))
            return false;
    return true;
}

bool dev_report_heartbeat_due(json_object *agent, time_t now)
{
    json_object *hb = member(agent, "heartbeatTime");
    time_t t;
    if (hb == NULL || !json_object_is_type(hb, json_type_string) ||
        !rec_parse_time(json_object_get_string(hb), &t))
        return true;
    double age = difftime(now, t);
    return age >= DEV_HEARTBEAT_S || age <= -DEV_HEARTBEAT_S;
}

bool dev_report_needs_write(const dev_report *r, json_object *agent, time_t now)
{
    return !dev_report_matches(r, agent) || dev_report_heartbeat_due(agent, now);
}

static json_object *entry_json(const dev_entry *e)
{
    json_object *d = json_object_new_object();
    if (d == NULL)
        return NULL;
    if (!pv_json_add_str(d, "id", e->id) || !pv_json_add_str(d, "path", e->path) ||
        !pv_json_add_str(d, "source",
                         e->discovered ? DEV_SOURCE_DISCOVERED : DEV_SOURCE_DECLARED) ||
        !pv_json_add(d, "present", json_object_new_boolean(e->present)) ||
        !pv_json_add_str(d, "message", e->message)) {
        json_object_put(d);
        return NULL;
    }
    return d;
}

int dev_report_patch(const dev_report *r, time_t now, json_object **out)
{
    *out = NULL;
    char ts[REC_TIME_STRLEN];
    if (rec_format_time(now, ts) == NULL)
        return KC_ERR_INVALID_ARG;
    json_object *patch = json_object_new_object();
    json_object *status = patch != NULL ? pv_json_add_child(patch, "status") : NULL;
    json_object *agent = status != NULL ? pv_json_add_child(status, "agent") : NULL;
    json_object *devices = json_object_new_array_ext(r->n > 0 ? (int)r->n : 1);
    bool ok = agent != NULL &&
              pv_json_add_i64(agent, "observedGeneration", r->observed_generation) &&
              pv_json_add_str(agent, "heartbeatTime", ts);
    ok = ok && devices != NULL;
    if (ok) {
        for (size_t i = 0; i < r->n && ok; i++) {
            json_object *d = entry_json(&r->v[i]);
            ok = d != NULL && json_object_array_add(devices, d) == 0;
            if (!ok)
                json_object_put(d);
        }
    }
    if (!ok) {
        json_object_put(devices);
        json_object_put(patch);
        return KC_ERR_NOMEM;
    }
    if (!pv_json_add(agent, "devices", devices)) { /* devices released by it */
        json_object_put(patch);
        return KC_ERR_NOMEM;
    }
    *out = patch;
    return KC_OK;
}
