/*
 * rec_claim - the claim reconcile of every domain (rec_domain.h); README.md
 * beside this file says why each step is safe with any number of replicas
 * and a kill -9 anywhere. In short:
 *   - the finalizer goes on before anything is acquired;
 *   - what a claim holds is read from the Reservations cache (index by claim
 *     uid) plus this process's in-flight creations, never from its status;
 *   - a slot is acquired by creating its Reservation (201 ours, 409 another
 *     claim's, or ours from before a crash: rec_reserve_acquire);
 *   - after an acquire the claim's holdings are read again: a second slot
 *     that a lagging cache hid is given back, and a claim holding two keeps
 *     the same one on every replica (def->choose_keep);
 *   - the status is rewritten from what is held on every reconcile.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pv_clock.h"
#include "rec_domain_internal.h"
#include "rec_reserve.h"
#include "rec_util.h"

typedef struct claim_run {
    rec_domain *d;
    const rec_domain_def *def;
    const char *logger;
    kc_ref ref;
    json_object *claim; /* store object (store_obj_put) */
    json_object *cur;   /* what status writes go against: claim, or the server's newer copy */
    bool cur_owned;     /* cur is ours to json_object_put */
    const char *uid, *pool_name, *wanted;
    int64_t generation;
    json_object *pool_obj; /* store object or NULL */
    void *pool;            /* def->pool_open's; NULL: pool missing or invalid */
    char *pool_problem;    /* why the pool is invalid */
    char **held_names;
    char **held_slots;
    size_t n_held;
} claim_run;

static void held_clear(claim_run *r)
{
    for (size_t i = 0; i < r->n_held; i++) {
        free(r->held_names[i]);
        free(r->held_slots[i]);
    }
    free(r->held_names);
    free(r->held_slots);
    r->held_names = NULL;
    r->held_slots = NULL;
    r->n_held = 0;
}

static void claim_run_clear(claim_run *r)
{
    held_clear(r);
    if (r->cur_owned)
        json_object_put(r->cur);
    store_obj_put(r->claim);
    store_obj_put(r->pool_obj);
    if (r->pool)
        r->def->pool_close(r->pool);
    free(r->pool_problem);
}

static json_object *cur_status(claim_run *r)
{
    return rec_obj_at(r->cur, "status");
}

static void set_cur(claim_run *r, json_object *obj)
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

/* Add name/slot to the held list unless there. false on allocation failure. */
static bool held_add(claim_run *r, const char *name, const char *slot)
{
    for (size_t i = 0; i < r->n_held; i++)
        if (!strcmp(r->held_names[i], name))
            return true;
    char **nn = realloc(r->held_names, (r->n_held + 1) * sizeof *nn);
    if (!nn)
        return false;
    r->held_names = nn;
    char **ns = realloc(r->held_slots, (r->n_held + 1) * sizeof *ns);
    if (!ns)
        return false;
    r->held_slots = ns;
    char *n_copy = strdup(name), *s_copy = strdup(slot);
    if (!n_copy || !s_copy) {
        free(n_copy);
        free(s_copy);
        return false;
    }
    r->held_names[r->n_held] = n_copy;
    r->held_slots[r->n_held] = s_copy;
    r->n_held++;
    return true;
}

/* What the claim holds: its Reservations in the cache and in flight. */
static int load_held(claim_run *r)
{
    held_clear(r);
    rec_domain *d = r->d;
    json_object **objs = NULL;
    size_t n = 0;
    int rc = store_by_index(d->resv_store, REC_IDX_CLAIM_UID, r->uid, &objs, &n);
    if (rc != KC_OK)
        return rc;
    for (size_t i = 0; i < n && rc == KC_OK; i++) {
        const char *name = rec_obj_str(objs[i], "metadata.name");
        const char *slot = rec_obj_str(objs[i], "spec.slot");
        const char *kind = rec_obj_str(objs[i], "spec.pool.kind");
        if (name && slot && kind && !strcmp(kind, r->def->pool_kind) && !held_add(r, name, slot))
            rc = KC_ERR_NOMEM;
    }
    store_objs_free(objs, n);
    pthread_mutex_lock(&d->mu);
    rec_pool_state *ps = rec_pool_state_get(d, r->pool_name, false);
    if (ps) {
        rec_inflight_prune(ps, pv_clock_monotonic());
        for (size_t i = 0; i < ps->n_inflight && rc == KC_OK; i++)
            if (!strcmp(ps->inflight[i].claim_uid, r->uid) &&
                !held_add(r, ps->inflight[i].name, ps->inflight[i].slot))
                rc = KC_ERR_NOMEM;
    }
    pthread_mutex_unlock(&d->mu);
    return rc;
}

/* Note a Reservation we hold, unless the cache shows it already (then its add
 * event has come and gone). Checked under d->mu, which the add handler takes
 * only after the store has the object: one of the two always sees the other. */
static void inflight_note(claim_run *r, const char *name, const char *slot)
{
    rec_domain *d = r->d;
    pthread_mutex_lock(&d->mu);
    json_object *cached = NULL;
    bool in_cache = store_get(d->resv_store, name, &cached) == KC_OK &&
                    !strcmp(rec_nz(rec_obj_str(cached, "spec.claim.uid")), r->uid);
    store_obj_put(cached);
    rec_pool_state *ps = in_cache ? NULL : rec_pool_state_get(d, r->pool_name, true);
    if (ps)
        (void)rec_inflight_add(ps, slot, name, r->uid);
    pthread_mutex_unlock(&d->mu);
}

static void inflight_forget_claim(claim_run *r)
{
    pthread_mutex_lock(&r->d->mu);
    rec_pool_state *ps = rec_pool_state_get(r->d, r->pool_name, false);
    if (ps)
        rec_inflight_remove_uid(ps, r->uid);
    pthread_mutex_unlock(&r->d->mu);
}

static void inflight_forget_slot(claim_run *r, const char *slot)
{
    pthread_mutex_lock(&r->d->mu);
    rec_pool_state *ps = rec_pool_state_get(r->d, r->pool_name, false);
    if (ps)
        (void)rec_inflight_remove_slot(ps, slot, NULL);
    pthread_mutex_unlock(&r->d->mu);
}

static void claim_event(claim_run *r, const char *type, const char *reason, const char *message)
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
    json_object *old_ready = rec_get_condition(cur_status(r), REC_COND_READY);
    bool transition = !old_ready ||
                      strcmp(rec_nz(ready_field(cur_status(r), "status")),
                             rec_nz(ready_field(new_status, "status"))) ||
                      strcmp(rec_nz(ready_field(cur_status(r), "reason")),
                             rec_nz(ready_field(new_status, "reason")));

    kc_error err = KC_ERROR_INIT;
    json_object *out = NULL;
    bool written = false;
    const char *before_rv = rec_obj_str(r->cur, "metadata.resourceVersion");
    int rc = rec_update_status(r->d->client, &r->ref, r->cur, new_status, &out, &written, &err);
    json_object_put(new_status);
    ctl_result res = ctl_done();
    if (rc == KC_OK) {
        if (written)
            rec_stale_note(r->d->stale, r->uid, before_rv);
        if (transition && written)
            claim_event(r, ev_type, ev_reason, ev_message);
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
    int rc = r->def->claim_pending(cur_status(r), reason, message, r->generation, time(NULL), &st);
    if (rc != KC_OK)
        return ctl_error(rc, "building the claim status: %s", kc_strerror(rc));
    return claim_write_status(r, st, REC_EVENT_WARNING, reason, message);
}

/* claim_pending with a message (consumed) from a builder that returned rc. */
static ctl_result claim_pending_msg(claim_run *r, const char *reason, int rc, char *message)
{
    ctl_result res =
        rc == KC_OK ? claim_pending(r, reason, message) : ctl_error(rc, "out of memory");
    free(message);
    return res;
}

static ctl_result claim_ready(claim_run *r, const char *slot)
{
    json_object *st = NULL;
    char *ev = NULL;
    int rc = r->def->claim_ready(cur_status(r), r->pool_name, r->pool_obj, r->pool, slot,
                                 r->generation, time(NULL), &st, &ev);
    if (rc != KC_OK) {
        free(ev);
        return ctl_error(rc, "building the claim status: %s", kc_strerror(rc));
    }
    ctl_result res = claim_write_status(r, st, REC_EVENT_NORMAL, r->def->reason_ready, rec_nz(ev));
    free(ev);
    return res;
}

static int claim_release(claim_run *r, const char *name, bool *released, kc_error *err)
{
    return rec_reserve_release(r->d->client, name, r->uid, released, err);
}

/* Remove our finalizer from the claim (it is being deleted). */
static ctl_result remove_finalizer(claim_run *r)
{
    if (!rec_has_finalizer(r->cur, REC_FINALIZER))
        return ctl_done();
    kc_error err = KC_ERROR_INIT;
    int rc =
        rec_ensure_finalizer(r->d->client, &r->ref, r->cur, REC_FINALIZER, false, NULL, NULL, &err);
    ctl_result res = ctl_done();
    if (rc == KC_ERR_CONFLICT)
        res = ctl_requeue();
    else if (rc != KC_OK && rc != KC_ERR_NOT_FOUND)
        res = rec_api_error("removing the finalizer", rc, &err);
    kc_error_clear(&err);
    return res;
}

static ctl_result claim_deleting(claim_run *r)
{
    const rec_domain_def *def = r->def;
    int rc = load_held(r);
    if (rc != KC_OK)
        return ctl_error(rc, "listing the claim's reservations: %s", kc_strerror(rc));
    /* What status says it holds, in case the cache has not seen it. */
    char *ss = def->status_slot(cur_status(r));
    if (ss) {
        char *name = NULL;
        if (def->slot_name(r->pool_name, ss, &name, NULL) == KC_OK && !held_add(r, name, ss))
            rc = KC_ERR_NOMEM;
        free(name);
        free(ss);
        if (rc != KC_OK)
            return ctl_error(rc, "out of memory");
    }
    bool any = false;
    for (size_t i = 0; i < r->n_held; i++) {
        kc_error err = KC_ERROR_INIT;
        bool released = false;
        rc = claim_release(r, r->held_names[i], &released, &err);
        if (rc != KC_OK) {
            ctl_result res = rec_api_error("releasing a reservation", rc, &err);
            kc_error_clear(&err);
            return res;
        }
        any = any || released;
    }
    inflight_forget_claim(r);
    ctl_result res = remove_finalizer(r);
    if (res.outcome != CTL_DONE)
        return res;
    if (any) {
        const char *shown = def->status_display(cur_status(r));
        char *m = NULL;
        if (rec_msg(&m, "Released %s of %s %s", shown && *shown ? shown : "what it held",
                    def->pool_kind, r->pool_name) == KC_OK)
            claim_event(r, REC_EVENT_NORMAL, "Released", m);
        free(m);
    }
    return ctl_done();
}

/*
 * Acquire slot of the pool for the claim. 0 acquired (and noted in flight),
 * REC_TAKEN (holder filled), or a negative kc_status (err filled).
 */
static int claim_acquire(claim_run *r, const char *slot, rec_reservation *holder, kc_error *err)
{
    memset(holder, 0, sizeof *holder);
    char *name = NULL, *canon = NULL;
    int rc = r->def->slot_name(r->pool_name, slot, &name, &canon);
    if (rc != KC_OK)
        return rc;
    rec_claim_ref cref = {.kind = r->def->claim_kind,
                          .namespace_ = r->ref.namespace_,
                          .name = r->ref.name,
                          .uid = r->uid};
    rc = rec_reserve_acquire(r->d->client, r->def->pool_kind, r->pool_name, name, canon, &cref, 0,
                             holder, err);
    if (rc == KC_OK)
        inflight_note(r, name, canon);
    free(name);
    free(canon);
    return rc;
}

/*
 * After acquiring slot: if the claim turns out to hold another Reservation
 * too (a lagging cache hid it before), give slot back and requeue; the next
 * reconcile settles on the older one. *settled: slot is the claim's only one.
 */
static ctl_result claim_after_acquire(claim_run *r, const char *slot, bool *settled)
{
    *settled = false;
    int rc = load_held(r);
    if (rc != KC_OK)
        return ctl_error(rc, "listing the claim's reservations: %s", kc_strerror(rc));
    bool other = false;
    for (size_t i = 0; i < r->n_held && !other; i++)
        other = strcmp(r->held_slots[i], slot) != 0;
    if (!other) {
        *settled = true;
        return ctl_done();
    }
    char *name = NULL;
    rc = r->def->slot_name(r->pool_name, slot, &name, NULL);
    if (rc != KC_OK)
        return ctl_error(rc, "naming the reservation: %s", kc_strerror(rc));
    kc_error err = KC_ERROR_INIT;
    rc = claim_release(r, name, NULL, &err);
    free(name);
    ctl_result res =
        rc == KC_OK ? ctl_requeue() : rec_api_error("releasing a second reservation", rc, &err);
    kc_error_clear(&err);
    inflight_forget_slot(r, slot);
    return res;
}

/* Acquired slot: when it is the claim's only one, write the status. */
static ctl_result claim_settle(claim_run *r, const char *slot)
{
    bool settled = false;
    ctl_result res = claim_after_acquire(r, slot, &settled);
    if (!settled)
        return res;
    return claim_ready(r, slot);
}

/* The claim holds n_held >= 1 slots: keep one, release the rest, write status. */
static ctl_result claim_holds(claim_run *r)
{
    const rec_domain_def *def = r->def;
    char *ss = def->status_slot(cur_status(r));
    size_t keep = def->choose_keep((const char *const *)r->held_slots, r->n_held, ss, r->wanted);
    free(ss);
    for (size_t i = 0; i < r->n_held; i++) {
        if (i == keep)
            continue;
        kc_error err = KC_ERROR_INIT;
        bool released = false;
        int rc = claim_release(r, r->held_names[i], &released, &err);
        if (rc != KC_OK) {
            ctl_result res = rec_api_error("releasing a second reservation", rc, &err);
            kc_error_clear(&err);
            return res;
        }
        inflight_forget_slot(r, r->held_slots[i]);
        if (released)
            rec_log(r->d, REC_LOG_INFO, r->logger, "released a second reservation of a claim",
                    REC_KV("namespace", r->ref.namespace_, "name", r->ref.name, def->slot_noun,
                           r->held_slots[i]));
    }
    return claim_ready(r, r->held_slots[keep]);
}

/* A slot asked for by name: exactly that one or a reason why not. */
static ctl_result claim_wanted(claim_run *r)
{
    const rec_domain_def *def = r->def;
    char *slot = NULL, *m = NULL;
    const char *reason = NULL;
    int rc = def->check_wanted(r->pool, r->pool_name, r->wanted, &slot, &reason, &m);
    if (rc == REC_NO_SLOT)
        return claim_pending_msg(r, reason, KC_OK, m);
    if (rc != KC_OK)
        return ctl_error(rc, "out of memory");
    rec_reservation holder;
    kc_error err = KC_ERROR_INIT;
    rc = claim_acquire(r, slot, &holder, &err);
    ctl_result res;
    if (rc == KC_OK) {
        res = claim_settle(r, slot);
    } else if (rc == REC_TAKEN) {
        rc = def->msgs.in_use(r->wanted, r->pool_name, holder.claim_namespace, holder.claim_name,
                              &m);
        res = claim_pending_msg(r, def->reason_in_use, rc, m);
    } else if (rc == KC_ERR_CONFLICT) {
        res = ctl_requeue();
    } else {
        res = rec_api_error("reserving the slot asked for", rc, &err);
    }
    free(slot);
    rec_reservation_clear(&holder);
    kc_error_clear(&err);
    return res;
}

/* Pick a free slot under d->mu (used set + in flight + tried). */
static int pick_locked(claim_run *r, char *const *tried, size_t n_tried, char **out)
{
    rec_domain *d = r->d;
    pthread_mutex_lock(&d->mu);
    rec_pool_state *ps = rec_pool_state_get(d, r->pool_name, true);
    int rc = KC_ERR_NOMEM;
    if (ps) {
        rec_inflight_prune(ps, pv_clock_monotonic());
        size_t n_skip = n_tried + ps->n_inflight;
        const char **skip = n_skip ? malloc(n_skip * sizeof *skip) : NULL;
        if (!n_skip || skip) {
            for (size_t i = 0; i < n_tried; i++)
                skip[i] = tried[i];
            for (size_t i = 0; i < ps->n_inflight; i++)
                skip[n_tried + i] = ps->inflight[i].slot;
            rc = r->def->pick(r->pool, ps->used, ps->requested, skip, n_skip, r->uid, out);
        }
        free(skip);
    }
    pthread_mutex_unlock(&d->mu);
    return rc;
}

/* Any free slot, from the claim's place in the pool. */
static ctl_result claim_allocate(claim_run *r)
{
    char *tried[REC_ATTEMPTS];
    size_t n_tried = 0;
    ctl_result res;
    for (;;) {
        if (n_tried == REC_ATTEMPTS) {
            rec_log(r->d, REC_LOG_DEBUG, r->logger, "every slot tried was taken; requeue",
                    REC_KV("namespace", r->ref.namespace_, "name", r->ref.name));
            res = ctl_requeue();
            break;
        }
        char *slot = NULL;
        int rc = pick_locked(r, tried, n_tried, &slot);
        if (rc == REC_NO_SLOT) {
            char *m = NULL;
            rc = r->def->msgs.exhausted(r->pool_name, r->pool, &m);
            res = claim_pending_msg(r, r->def->reason_exhausted, rc, m);
            break;
        }
        if (rc != KC_OK) {
            res = ctl_error(rc, "out of memory");
            break;
        }
        rec_reservation holder;
        kc_error err = KC_ERROR_INIT;
        rc = claim_acquire(r, slot, &holder, &err);
        rec_reservation_clear(&holder);
        if (rc == REC_TAKEN) {
            tried[n_tried++] = slot; /* our cache lags: that one is used */
            kc_error_clear(&err);
            continue;
        }
        if (rc == KC_OK)
            res = claim_settle(r, slot);
        else if (rc == KC_ERR_CONFLICT)
            res = ctl_requeue();
        else
            res = rec_api_error("reserving a slot", rc, &err);
        kc_error_clear(&err);
        free(slot);
        break;
    }
    for (size_t i = 0; i < n_tried; i++)
        free(tried[i]);
    return res;
}

/*
 * status names a slot but no Reservation of the claim is known: take that
 * slot again (409 with our uid: it was ours all along). true when handled
 * (*res set); false to allocate afresh (it went to another claim).
 */
static bool claim_readopt(claim_run *r, const char *slot, ctl_result *res)
{
    rec_reservation holder;
    kc_error err = KC_ERROR_INIT;
    int rc = claim_acquire(r, slot, &holder, &err);
    bool handled = true;
    if (rc == KC_OK) {
        *res = claim_settle(r, slot);
    } else if (rc == REC_TAKEN) {
        char *m = NULL;
        if (rec_msg(&m,
                    "%s was released outside the operator and is now held by %s %s/%s; "
                    "taking another %s",
                    slot, r->def->claim_kind, rec_nz(holder.claim_namespace),
                    rec_nz(holder.claim_name), r->def->slot_noun) == KC_OK)
            claim_event(r, REC_EVENT_WARNING, r->def->reason_lost, m);
        free(m);
        handled = false;
    } else if (rc == KC_ERR_CONFLICT) {
        *res = ctl_requeue();
    } else {
        *res = rec_api_error("reserving the slot status names", rc, &err);
    }
    rec_reservation_clear(&holder);
    kc_error_clear(&err);
    return handled;
}

/* The finalizer first: nothing is held by a claim that could vanish unseen. */
static ctl_result ensure_finalizer(claim_run *r, bool *done)
{
    *done = true;
    if (rec_has_finalizer(r->claim, REC_FINALIZER))
        return ctl_done();
    kc_error err = KC_ERROR_INIT;
    json_object *updated = NULL;
    int rc = rec_ensure_finalizer(r->d->client, &r->ref, r->claim, REC_FINALIZER, true, &updated,
                                  NULL, &err);
    ctl_result res = ctl_done(); /* NotFound: gone meanwhile */
    if (rc == KC_ERR_CONFLICT || rc == KC_ERR_INVALID)
        res = ctl_requeue(); /* changed, or being deleted: again from the cache */
    else if (rc != KC_OK && rc != KC_ERR_NOT_FOUND)
        res = rec_api_error("adding the finalizer", rc, &err);
    kc_error_clear(&err);
    if (rc != KC_OK) {
        json_object_put(updated);
        *done = false;
        return res;
    }
    if (updated) {
        rec_stale_note(r->d->stale, r->uid, rec_obj_str(r->claim, "metadata.resourceVersion"));
        set_cur(r, updated);
    }
    return res;
}

static int open_pool(claim_run *r)
{
    json_object *pool_obj = NULL;
    if (store_get(r->d->pools_store, r->pool_name, &pool_obj) != KC_OK)
        return KC_OK;
    r->pool_obj = pool_obj;
    return r->def->pool_open(pool_obj, &r->pool, &r->pool_problem);
}

static ctl_result claim_run_reconcile(claim_run *r)
{
    const rec_domain_def *def = r->def;
    if (rec_obj_is_deleting(r->claim))
        return claim_deleting(r);
    bool ok = false;
    ctl_result res = ensure_finalizer(r, &ok);
    if (!ok)
        return res;
    int rc = open_pool(r);
    if (rc != KC_OK)
        return ctl_error(rc, "out of memory");

    rc = load_held(r);
    if (rc != KC_OK)
        return ctl_error(rc, "listing the claim's reservations: %s", kc_strerror(rc));
    if (r->n_held > 0)
        return claim_holds(r);

    bool pool_deleting = r->pool_obj && rec_obj_is_deleting(r->pool_obj);
    if (r->pool && !pool_deleting) {
        char *ss = def->status_slot(cur_status(r));
        bool handled = ss && def->pool_contains(r->pool, ss) && claim_readopt(r, ss, &res);
        free(ss);
        if (handled)
            return res;
    }

    char *m = NULL;
    if (!r->pool_obj) {
        rc = def->msgs.pool_not_found(r->pool_name, &m);
        return claim_pending_msg(r, def->reason_not_found, rc, m);
    }
    if (pool_deleting) {
        rc = def->msgs.pool_terminating(r->pool_name, &m);
        return claim_pending_msg(r, def->reason_pool_gone, rc, m);
    }
    if (!r->pool) {
        rc = def->msgs.pool_invalid(r->pool_name, r->pool_problem, &m);
        return claim_pending_msg(r, def->reason_invalid, rc, m);
    }
    if (r->wanted)
        return claim_wanted(r);
    return claim_allocate(r);
}

ctl_result rec_claim_reconcile(const ctl_ctx *ctx, const char *namespace_, const char *name,
                               void *user)
{
    (void)ctx;
    rec_domain *d = user;
    const rec_domain_def *def = d->def;
    if (!rec_caches_ready(d))
        return ctl_requeue_after(REC_SYNC_RETRY);
    char *key = NULL;
    if (rec_msg(&key, "%s/%s", namespace_, name) != KC_OK)
        return ctl_error(KC_ERR_NOMEM, "out of memory");
    json_object *claim = NULL;
    int rc = store_get(d->claims_store, key, &claim);
    free(key);
    if (rc == KC_ERR_NOT_FOUND)
        return ctl_done(); /* gone: its Reservations are the sweep's */
    if (rc != KC_OK)
        return ctl_error(rc, "reading the claim cache: %s", kc_strerror(rc));

    claim_run r = {
        .d = d,
        .def = def,
        .logger = def->claim_controller,
        .claim = claim,
        .cur = claim,
        .uid = rec_obj_str(claim, "metadata.uid"),
        .pool_name = rec_obj_str(claim, def->claim_pool_path),
        .wanted = def->claim_slot_path ? rec_obj_str(claim, def->claim_slot_path) : NULL,
        .generation = rec_obj_generation(claim),
    };
    r.ref = def->claims_ref;
    r.ref.namespace_ = namespace_;
    r.ref.name = name;
    if (r.wanted && !*r.wanted)
        r.wanted = NULL;

    ctl_result res;
    if (!r.uid || !r.pool_name || !*r.pool_name)
        res = ctl_done(); /* the schema requires both: nothing to do with such an object */
    else if (rec_stale_check(d->stale, r.uid, rec_obj_str(claim, "metadata.resourceVersion")))
        res = ctl_done(); /* our newer write is on its way and enqueues the claim */
    else
        res = claim_run_reconcile(&r);
    claim_run_clear(&r);
    return res;
}
