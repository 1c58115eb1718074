/*
 * rec_claim - the claim reconcile of every domain (rec_domain.h); README.md
 * beside this file says why each step is safe with any number of replicas
 * and a kill -9 anywhere. In short:
 *   - the finalizer goes on before anything is acquired;
 *   - what a claim holds is read from the Reservations cache (index by claim
 *     uid) plus this process's in-flight creations, never from its status;
 *   - a slot is acquired by creating its Reservation (201 ours, 409 another
 *     claim's, or ours from before a crash: rec_reserve_acquire);
 *   - after an acquire the claim's holdings are read again: slots past the
 *     count that a lagging cache hid are given back, and a claim holding too
 *     many keeps the same ones on every replica (those status names, then
 *     def->choose_keep);
 *   - a fresh claim of several slots takes them all or none: what a round
 *     took is given back when the pool cannot complete it;
 *   - the status is rewritten from what is held on every reconcile;
 *   - no slot is shown by two claims at once: a held slot is given back only
 *     when the claim's latest status (read from the API server) does not show
 *     it, and a status shows a slot it did not show only when this run
 *     acquired it or the API server confirms the claim still holds it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pv_clock.h"
#include "rec_claim_internal.h"
#include "rec_util.h"

static void claim_run_clear(claim_run *r)
{
    rec_slot_list_clear(&r->held);
    rec_slot_list_clear(&r->acquired);
    if (r->cur_owned)
        json_object_put(r->cur);
    store_obj_put(r->claim);
    store_obj_put(r->pool_obj);
    rec_pool_put(r->d, r->open);
    if (r->want)
        r->def->want_close(r->want);
    free(r->pool_owned);
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
    if (def->claim_release_gate) {
        ctl_result gate = def->claim_release_gate(r->d->user, r->cur);
        if (gate.outcome != CTL_DONE)
            return gate;
    }
    int rc = rec_claim_load_held(r);
    if (rc != KC_OK)
        return ctl_error(rc, "listing the claim's reservations: %s", kc_strerror(rc));
    /* What status says it holds, in case the cache has not seen it (a scoped
     * domain needs the pool's scope for the names: the cached pool's). */
    const char *sp = rec_claim_status_pool(r);
    char **ss = NULL;
    size_t n_ss = 0;
    json_object *sp_obj = NULL;
    if (sp && rec_scoped(def))
        (void)store_get(r->d->pools_store, sp, &sp_obj);
    const char *space = sp ? rec_lock_space(def, sp, sp_obj) : NULL;
    if (space && (rc = rec_claim_status_slots(r, &ss, &n_ss)) != KC_OK) {
        store_obj_put(sp_obj);
        return ctl_error(rc, "out of memory");
    }
    for (size_t i = 0; i < n_ss && rc == KC_OK; i++) {
        char *name = NULL;
        if (def->slot_name(space, ss[i], &name, NULL) == KC_OK &&
            !rec_slot_list_add(&r->held, name, ss[i], sp))
            rc = KC_ERR_NOMEM;
        free(name);
    }
    rec_claim_strings_free(ss, n_ss);
    store_obj_put(sp_obj);
    if (rc != KC_OK)
        return ctl_error(rc, "out of memory");
    bool any = false;
    for (size_t i = 0; i < r->held.n; i++) {
        kc_error err = KC_ERROR_INIT;
        bool released = false;
        rc = rec_claim_release(r, r->held.names[i], &released, &err);
        if (rc != KC_OK) {
            ctl_result res = rec_api_error("releasing a reservation", rc, &err);
            kc_error_clear(&err);
            return res;
        }
        any = any || released;
        rec_claim_forget_inflight(r, r->held.pools[i]);
    }
    ctl_result res = remove_finalizer(r);
    if (res.outcome != CTL_DONE)
        return res;
    if (any) {
        const char *shown = def->status_display(rec_claim_cur_status(r));
        const char *from = sp ? sp : (r->held.n ? r->held.pools[0] : "");
        char *m = NULL;
        if (rec_msg(&m, "Released %s of %s %s", shown && *shown ? shown : "what it held",
                    def->pool_kind, from) == KC_OK)
            rec_claim_event(r, REC_EVENT_NORMAL, "Released", m);
        free(m);
    }
    return ctl_done();
}

/* A slot asked for by name: exactly that one or a reason why not. */
static ctl_result claim_wanted(claim_run *r)
{
    const rec_domain_def *def = r->def;
    char *slot = NULL, *m = NULL;
    const char *reason = NULL;
    int rc = def->check_wanted(r->pool, r->pool_name, r->wanted, &slot, &reason, &m);
    if (rc == REC_NO_SLOT)
        return rec_claim_pending_msg(r, reason, KC_OK, m);
    if (rc != KC_OK)
        return ctl_error(rc, "out of memory");
    rec_reservation holder;
    kc_error err = KC_ERROR_INIT;
    slot_list got = {0};
    rc = rec_claim_acquire(r, slot, &got, &holder, &err);
    ctl_result res;
    if (rc == KC_OK) {
        res = rec_claim_after_round(r, &got);
    } else if (rc == REC_TAKEN) {
        rc = def->msgs.in_use(r->wanted, r->pool_name, holder.claim_namespace, holder.claim_name,
                              holder.pool_name, &m);
        res = rec_claim_pending_msg(r, def->reason_in_use, rc, m);
    } else if (rc == KC_ERR_CONFLICT) {
        res = ctl_requeue();
    } else {
        res = rec_api_error("reserving the slot asked for", rc, &err);
    }
    rec_slot_list_clear(&got);
    free(slot);
    rec_reservation_clear(&holder);
    kc_error_clear(&err);
    return res;
}

/* r->count free slots of the pool, all or none. */
static ctl_result claim_allocate(claim_run *r)
{
    slot_list none = {0}, got = {0};
    ctl_result res = ctl_done();
    fill_outcome fo = rec_claim_fill(r, &none, (size_t)r->count, &got, &res);
    if (fo == FILL_DONE) {
        res = rec_claim_after_round(r, &got);
    } else if (fo == FILL_NONE) {
        res = rec_claim_release_unshown(r, &got, "giving back a partial allocation");
        /*
         * A pool this run chose had room when it chose, and other claims took
         * it before the round (another worker's Reservation, or one the
         * cache had not shown yet). That says nothing of the other pools:
         * choose again from the newer view (rate-limited) rather than wait
         * on this pool. Waiting here lost claims for good (3 of 10,000 in a
         * bench run): a second such run writes the same status (no write, no
         * event), the pool filled up by Reservations made (not deleted), and
         * nothing woke the claim while another pool had room. When no pool
         * has room, choose_pool says so and the claim waits for a slot to be
         * freed, which a deleted Reservation announces.
         */
        if (res.outcome == CTL_DONE)
            res = r->pool_chosen ? ctl_requeue() : rec_claim_exhausted(r);
    }
    rec_slot_list_clear(&got);
    return res;
}

/*
 * status names slots but no Reservation of the claim is known: take them
 * again (409 with our uid: they were ours all along). true when handled
 * (*res set); false to allocate afresh (they went to other claims).
 */
static bool claim_readopt(claim_run *r, char **slots, size_t n, ctl_result *res)
{
    slot_list got = {0};
    bool handled = false;
    for (size_t i = 0; i < n; i++) {
        if (!r->def->pool_contains(r->pool, slots[i]))
            continue;
        rec_reservation holder;
        kc_error err = KC_ERROR_INIT;
        int rc = rec_claim_acquire(r, slots[i], &got, &holder, &err);
        if (rc == REC_TAKEN) {
            char *m = NULL;
            if (rec_msg(&m,
                        "%s was released outside the operator and is now held by %s %s/%s; "
                        "taking another %s",
                        slots[i], r->def->claim_kind, rec_nz(holder.claim_namespace),
                        rec_nz(holder.claim_name), r->def->slot_noun) == KC_OK)
                rec_claim_event(r, REC_EVENT_WARNING, r->def->reason_lost, m);
            free(m);
        } else if (rc != KC_OK) {
            *res = rc == KC_ERR_CONFLICT
                       ? ctl_requeue()
                       : rec_api_error("reserving the slot status names", rc, &err);
            handled = true;
        }
        rec_reservation_clear(&holder);
        kc_error_clear(&err);
        if (handled)
            break;
    }
    if (!handled && got.n > 0) {
        *res = rec_claim_after_round(r, &got);
        handled = true;
    }
    rec_slot_list_clear(&got);
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
        rec_claim_set_cur(r, updated);
    }
    return res;
}

static int open_pool(claim_run *r)
{
    int rc;
    if (r->def->pools_compact) {
        rc = rec_pool_open_cached(r->d, r->pool_name, &r->open);
        if (rc == KC_ERR_NOT_FOUND)
            return KC_OK;
        r->pool_cached = true;
        /* An unusable spec: the object too, for what the messages quote. */
        if (rc == KC_OK && !r->open->pool)
            (void)store_get(r->d->pools_store, r->pool_name, &r->pool_obj);
    } else {
        json_object *pool_obj = NULL;
        if (store_get(r->d->pools_store, r->pool_name, &pool_obj) != KC_OK)
            return KC_OK;
        r->pool_obj = pool_obj;
        r->pool_cached = true;
        rc = rec_pool_open(r->d, pool_obj, &r->open);
    }
    if (rc == KC_OK) {
        r->pool = r->open->pool;
        r->pool_problem = r->open->problem;
    }
    return rc;
}

static int set_pool_name(claim_run *r, const char *name)
{
    free(r->pool_owned);
    r->pool_owned = strdup(name);
    r->pool_name = r->pool_owned;
    return r->pool_owned ? KC_OK : KC_ERR_NOMEM;
}

/*
 * A claim that holds nothing and names no pool: ask the domain which of the
 * pools of its group. *chosen false: *res says why none.
 */
static ctl_result choose_pool(claim_run *r, bool *chosen)
{
    const rec_domain_def *def = r->def;
    rec_domain *d = r->d;
    *chosen = false;
    const char *group = rec_obj_str(r->claim, def->claim_group_path);
    char **keys = NULL;
    size_t n = 0;
    int rc = group ? store_index_keys(d->pools_store, REC_IDX_GROUP, group, &keys, &n) : KC_OK;
    if (rc != KC_OK)
        return ctl_error(rc, "reading the pool cache: %s", kc_strerror(rc));
    rec_pool_view *views = n ? calloc(n, sizeof *views) : NULL;
    rec_open_pool **opens = n ? calloc(n, sizeof *opens) : NULL;
    if (n && (!views || !opens))
        rc = KC_ERR_NOMEM;
    size_t nv = 0; /* views of the pools still cached */
    for (size_t i = 0; i < n && rc == KC_OK; i++) {
        /* Each pool opened once a resourceVersion (pools_compact: the object
         * is not parsed while that holds). */
        rec_pool_view *v = &views[nv];
        rc = rec_pool_open_cached(d, keys[i], &opens[nv]);
        if (rc == KC_ERR_NOT_FOUND) { /* deleted since the keys were listed */
            rc = KC_OK;
            continue;
        }
        if (rc != KC_OK)
            break;
        v->name = keys[i];
        if (!def->pools_compact)
            (void)store_get(d->pools_store, keys[i], &v->obj);
        v->pool = opens[nv]->pool;
        v->deleting = opens[nv]->deleting;
        nv++;
        if (!v->pool)
            continue;
        pthread_mutex_lock(&d->mu);
        rec_pool_state *ps = rec_pool_state_get(d, v->name, true);
        if (ps) {
            rec_inflight_prune(ps, pv_clock_monotonic());
            const char **skip = ps->n_inflight ? malloc(ps->n_inflight * sizeof *skip) : NULL;
            if (!ps->n_inflight || skip) {
                for (size_t k = 0; k < ps->n_inflight; k++)
                    skip[k] = ps->inflight[k].slot;
                def->pool_fit(v->pool, r->want, ps->used, ps->requested, skip, ps->n_inflight,
                              &v->fit, &v->free);
            } else {
                rc = KC_ERR_NOMEM;
            }
            free(skip);
        } else {
            rc = KC_ERR_NOMEM;
        }
        pthread_mutex_unlock(&d->mu);
    }
    ctl_result res = ctl_done();
    if (rc == KC_OK) {
        size_t pick = 0;
        const char *reason = NULL;
        char *m = NULL;
        rc = def->choose_pool(views, nv, r->want, r->uid, &pick, &reason, &m);
        if (rc == REC_NO_SLOT)
            res = rec_claim_pending_msg(r, reason, KC_OK, m);
        else if (rc == KC_OK && pick < nv && (rc = set_pool_name(r, views[pick].name)) == KC_OK)
            *chosen = r->pool_chosen = true;
        else
            free(m);
    }
    if (rc != KC_OK && rc != REC_NO_SLOT)
        res = ctl_error(rc, "choosing a pool: %s", kc_strerror(rc));
    for (size_t i = 0; i < nv; i++) {
        rec_pool_put(d, opens[i]);
        store_obj_put(views[i].obj);
    }
    free(opens);
    free(views);
    store_keys_free(keys, n);
    return res;
}

/* Which pool the claim works in: the spec's, the one it holds from, the one
 * status names, or one chosen now. *ok false: *res says why none. */
static ctl_result resolve_pool(claim_run *r, bool *ok)
{
    *ok = true;
    if (r->def->claim_pool_path)
        return ctl_done();
    const char *sp = rec_claim_status_pool(r);
    const char *pick = NULL;
    for (size_t i = 0; i < r->held.n && !pick; i++)
        if (sp && !strcmp(r->held.pools[i], sp))
            pick = sp;
    if (!pick && r->held.n > 0)
        pick = r->held.pools[0];
    if (!pick && sp && *sp) {
        char **ss = NULL;
        size_t n_ss = 0;
        if (rec_claim_status_slots(r, &ss, &n_ss) == KC_OK && n_ss > 0)
            pick = sp;
        rec_claim_strings_free(ss, n_ss);
    }
    if (pick) {
        int rc = set_pool_name(r, pick);
        return rc == KC_OK ? ctl_done() : ctl_error(rc, "out of memory");
    }
    return choose_pool(r, ok);
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
    char *m = NULL;
    int rc;
    if (def->want_open) {
        char *problem = NULL;
        rc = def->want_open(r->claim, &r->want, &problem);
        if (rc != KC_OK)
            return ctl_error(rc, "out of memory");
        if (!r->want)
            return rec_claim_pending_msg(r, def->reason_invalid, KC_OK, problem);
        free(problem);
        r->count = def->want_count ? def->want_count(r->want) : 1;
    }
    rc = rec_claim_load_held(r);
    if (rc != KC_OK)
        return ctl_error(rc, "listing the claim's reservations: %s", kc_strerror(rc));
    res = resolve_pool(r, &ok);
    if (!ok)
        return res;
    rc = open_pool(r);
    if (rc != KC_OK)
        return ctl_error(rc, "out of memory");
    if (r->held.n > 0)
        return rec_claim_holds(r);

    bool pool_deleting = rec_claim_pool_deleting(r);
    if (r->pool && !pool_deleting) {
        char **ss = NULL;
        size_t n_ss = 0;
        if ((rc = rec_claim_status_slots(r, &ss, &n_ss)) != KC_OK)
            return ctl_error(rc, "out of memory");
        bool handled = n_ss > 0 && claim_readopt(r, ss, n_ss, &res);
        rec_claim_strings_free(ss, n_ss);
        if (handled)
            return res;
    }

    if (!r->pool_cached) {
        rc = def->msgs.pool_not_found(r->pool_name, &m);
        return rec_claim_pending_msg(r, def->reason_not_found, rc, m);
    }
    if (pool_deleting) {
        rc = def->msgs.pool_terminating(r->pool_name, &m);
        return rec_claim_pending_msg(r, def->reason_pool_gone, rc, m);
    }
    if (!r->pool) {
        rc = def->msgs.pool_invalid(r->pool_name, r->pool_problem, &m);
        return rec_claim_pending_msg(r, def->reason_invalid, rc, m);
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
        .pool_name = def->claim_pool_path ? rec_obj_str(claim, def->claim_pool_path) : NULL,
        .wanted = def->claim_slot_path ? rec_obj_str(claim, def->claim_slot_path) : NULL,
        .generation = rec_obj_generation(claim),
        .count = 1,
    };
    r.ref = def->claims_ref;
    r.ref.namespace_ = namespace_;
    r.ref.name = name;
    if (r.wanted && !*r.wanted)
        r.wanted = NULL;

    ctl_result res;
    if (!r.uid || (def->claim_pool_path && (!r.pool_name || !*r.pool_name)))
        res = ctl_done(); /* the schema requires both: nothing to do with such an object */
    else if (rec_stale_check(d->stale, r.uid, rec_obj_str(claim, "metadata.resourceVersion")))
        res = ctl_done(); /* our newer write is on its way and enqueues the claim */
    else
        res = claim_run_reconcile(&r);
    claim_run_clear(&r);
    return res;
}
