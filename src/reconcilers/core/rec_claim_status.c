/*
 * rec_claim_status - the claim's status writes: rewritten from what is held
 * on every reconcile, written only when it changes, with an Event when the
 * Ready condition's status or reason changes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rec_claim_internal.h"
#include "rec_util.h"

json_object *rec_claim_cur_status(claim_run *r)
{
    return rec_obj_at(r->cur, "status");
}

void rec_claim_set_cur(claim_run *r, json_object *obj)
{
    if (r->cur_owned)
        json_object_put(r->cur);
    r->cur = obj;
    r->cur_owned = true;
}

static const char *ready_field(json_object *status, const char *key)
{
    json_object *ready = rec_get_condition(status, REC_COND_READY);
    return ready ? rec_obj_str(ready, key) : NULL;
}

/* Every slot the claim's status names (a list of malloc'd strings). */
int rec_claim_status_slots(claim_run *r, char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (r->def->status_slots)
        return r->def->status_slots(rec_claim_cur_status(r), out, n);
    char *one = r->def->status_slot(rec_claim_cur_status(r));
    if (!one)
        return KC_OK;
    *out = malloc(sizeof **out);
    if (!*out) {
        free(one);
        return KC_ERR_NOMEM;
    }
    (*out)[0] = one;
    *n = 1;
    return KC_OK;
}

void rec_claim_strings_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* The pool status says the claim holds from: the spec's when claims name
 * their pool, else status_pool_path. */
const char *rec_claim_status_pool(claim_run *r)
{
    if (r->def->claim_pool_path)
        return r->pool_name;
    return r->def->status_pool_path ? rec_obj_str(r->cur, r->def->status_pool_path) : NULL;
}

void rec_claim_event(claim_run *r, const char *type, const char *reason, const char *message)
{
    (void)rec_event(r->d->events, r->claim, r->def->api_version, r->def->claim_kind, type, reason,
                    "%s", message);
}

/*
 * Write new_status (consumed) as the claim's status when it differs, and emit
 * an Event when the Ready condition's status or reason changed.
 */
static ctl_result claim_write_status(claim_run *r, json_object *new_status, const char *ev_type,
                                     const char *ev_reason, const char *ev_message)
{
    json_object *old_ready = rec_get_condition(rec_claim_cur_status(r), REC_COND_READY);
    bool transition = !old_ready ||
                      strcmp(rec_nz(ready_field(rec_claim_cur_status(r), "status")),
                             rec_nz(ready_field(new_status, "status"))) ||
                      strcmp(rec_nz(ready_field(rec_claim_cur_status(r), "reason")),
                             rec_nz(ready_field(new_status, "reason")));

    kc_error err = KC_ERROR_INIT;
    json_object *out = NULL;
    bool written = false;
    const char *before_rv = rec_obj_str(r->cur, "metadata.resourceVersion");
    /* r->cur is a read of the compact claims store or a server's answer: ours. */
    int rc =
        rec_update_status_lent(r->d->client, &r->ref, r->cur, new_status, &out, &written, &err);
    json_object_put(new_status);
    ctl_result res = ctl_done();
    if (rc == KC_OK) {
        if (written)
            rec_stale_note(r->d->stale, r->uid, before_rv);
        if (transition && written)
            rec_claim_event(r, ev_type, ev_reason, ev_message);
        if (written && out) { /* what the rest of this run writes against */
            rec_claim_set_cur(r, out);
            r->latest = true;
            out = NULL;
        }
    } else if (rc == KC_ERR_CONFLICT) {
        res = ctl_requeue(); /* the cache was behind: again from the newer object */
    } else if (rc != KC_ERR_NOT_FOUND) {
        char what[96];
        snprintf(what, sizeof what, "writing the %s status", r->def->claim_kind);
        res = rec_api_error(what, rc, &err);
    }
    json_object_put(out);
    kc_error_clear(&err);
    return res;
}

static ctl_result claim_pending(claim_run *r, const char *reason, const char *message)
{
    json_object *st = NULL;
    int rc = r->def->claim_pending(rec_claim_cur_status(r), reason, message, r->generation,
                                   time(NULL), &st);
    if (rc != KC_OK)
        return ctl_error(rc, "building the claim status: %s", kc_strerror(rc));
    return claim_write_status(r, st, REC_EVENT_WARNING, reason, message);
}

/* claim_pending with a message (consumed) from a builder that returned rc. */
ctl_result rec_claim_pending_msg(claim_run *r, const char *reason, int rc, char *message)
{
    ctl_result res =
        rc == KC_OK ? claim_pending(r, reason, message) : ctl_error(rc, "out of memory");
    free(message);
    return res;
}

/* Ready with slots[0..n) (n == r->count). */
ctl_result rec_claim_ready(claim_run *r, char *const *slots, size_t n)
{
    json_object *st = NULL;
    char *ev = NULL;
    int rc;
    if (r->def->claim_ready_n)
        rc = r->def->claim_ready_n(rec_claim_cur_status(r), r->pool_name, r->pool_obj, r->pool,
                                   r->want, (const char *const *)slots, n, r->generation,
                                   time(NULL), &st, &ev);
    else
        rc = r->def->claim_ready(rec_claim_cur_status(r), r->pool_name, r->pool_obj, r->pool,
                                 slots[0], r->generation, time(NULL), &st, &ev);
    if (rc != KC_OK) {
        free(ev);
        return ctl_error(rc, "building the claim status: %s", kc_strerror(rc));
    }
    ctl_result res = claim_write_status(r, st, REC_EVENT_NORMAL, r->def->reason_ready, rec_nz(ev));
    free(ev);
    return res;
}

ctl_result rec_claim_exhausted(claim_run *r)
{
    char *m = NULL;
    int rc = r->def->msgs.exhausted(r->pool_name, r->pool, &m);
    return rec_claim_pending_msg(r, r->def->reason_exhausted, rc, m);
}
