/*
 * rec_pool - the pool reconcile and the orphan sweep of every domain
 * (rec_domain.h).
 *
 * Pools: the operator's finalizer goes on first; status counts come from the
 * pool's used set (the Reservations cache, def->set_counts), with Ready=True
 * reason def->reason_valid or Ready=False reason def->reason_invalid. A
 * status write whose only change is what allocations move (counts, holders:
 * def->pool_status_counts_only) waits REC_POOL_COALESCE after the first such
 * change, and at least REC_POOL_WRITE_INTERVAL after the pool's last write
 * (requeue-after on the pool's key), so that many allocations in one pool
 * make one write; and such writes of all the domain's pools take turns, at
 * most REC_POOL_COUNTS_PER_S a second, so that a storm spread over many pools
 * (100 DevicePools whose status lists every device and its holder) does not
 * cost the API server a large write per allocation: counts are eventually
 * right (API.md invariant 3 is "after convergence"), claims do not wait for
 * them. A change of conditions or of the slots themselves (a node agent's
 * report, a spec edit) is written at once and carries the counts, with one
 * exception: while a count-only write waits and the cached pool is the
 * version the wait began at, a reconcile answers with the rest of the wait
 * without reading the pool (counts_waiting), so a condition that comes from
 * elsewhere (def->pool_check: the node gone; def->pool_recheck: a report
 * gone stale) is written when that wait ends.
 * Deleting a pool works like PVC protection: while claims hold slots of it it
 * stays, Ready=False reason def->reason_terminating naming the first holders;
 * when nothing is held (the API server is asked, the cache may lag) the
 * finalizer goes. Events mark trouble and the recovery from it.
 *
 * Sweep: a Reservation whose claim is not in the claims cache is re-read from
 * the API server (rec_reserve_sweep_orphan) and freed only when the claim is
 * gone or has another uid. It runs on every Reservation add, on the delete of
 * a claim (its Reservations) and every REC_RESV_RESYNC seconds.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pv_clock.h"
#include "pv_json.h"
#include "rec_domain_internal.h"
#include "rec_reserve.h"
#include "rec_util.h"

/* "ns/name slot" of up to REC_HOLDERS_SHOWN holders of the pool, sorted by name. */
static int pool_holders(rec_domain *d, const char *pool, char ***out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    char **keys = NULL;
    size_t n = 0;
    int rc = store_index_keys(d->resv_store, REC_IDX_BY_POOL, pool, &keys, &n);
    if (rc != KC_OK)
        return rc;
    /* The REC_HOLDERS_SHOWN smallest names, by a partial selection sort. */
    size_t shown = n < REC_HOLDERS_SHOWN ? n : REC_HOLDERS_SHOWN;
    for (size_t i = 0; i < shown; i++) {
        size_t min = i;
        for (size_t j = i + 1; j < n; j++)
            if (strcmp(keys[j], keys[min]) < 0)
                min = j;
        char *t = keys[i];
        keys[i] = keys[min];
        keys[min] = t;
    }
    char **list = shown ? calloc(shown, sizeof *list) : NULL;
    if (shown && !list) {
        store_keys_free(keys, n);
        return KC_ERR_NOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < shown && rc == KC_OK; i++) {
        json_object *obj = NULL;
        if (store_get(d->resv_store, keys[i], &obj) != KC_OK)
            continue;
        rc = rec_msg(&list[k], "%s/%s %s", rec_nz(rec_obj_str(obj, "spec.claim.namespace")),
                     rec_nz(rec_obj_str(obj, "spec.claim.name")),
                     rec_nz(rec_obj_str(obj, "spec.slot")));
        if (rc == KC_OK)
            k++;
        store_obj_put(obj);
    }
    store_keys_free(keys, n);
    if (rc != KC_OK) {
        for (size_t i = 0; i < k; i++)
            free(list[i]);
        free(list);
        return rc;
    }
    *out = list;
    *n_out = k;
    return KC_OK;
}

static const char *cond_field(json_object *cond, const char *key)
{
    return cond ? rec_obj_str(cond, key) : NULL;
}

static bool counts_only(rec_domain *d, json_object *cached_status, json_object *new_status)
{
    static const char *const counts[] = {"allocated", "available"};
    if (!cached_status)
        return false;
    if (d->def->pool_status_counts_only)
        return d->def->pool_status_counts_only(cached_status, new_status);
    return rec_json_equal_except(cached_status, new_status, counts, 2);
}

/* d->mu held: when the count-only change of ps waiting may go (its turn
 * among the domain's pools once taken). */
static double counts_due(const rec_pool_state *ps)
{
    double due = ps->counts_since + REC_POOL_COALESCE;
    if (ps->last_status_write > 0 && ps->last_status_write + REC_POOL_WRITE_INTERVAL > due)
        due = ps->last_status_write + REC_POOL_WRITE_INTERVAL;
    return ps->counts_turn > due ? ps->counts_turn : due;
}

/*
 * While a count-only change of the pool waits and the cached pool is the
 * version it was seen in, what a reconcile would find is the same change or
 * more of it (only Reservations moved): the wait left, without reading the
 * pool (a parse, for pools_compact) or building its status. 0: reconcile.
 */
static double counts_waiting(rec_domain *d, const char *name)
{
    char *rv = NULL;
    if (store_rv(d->pools_store, name, &rv) != KC_OK)
        return 0;
    double wait = 0, now = pv_clock_monotonic();
    pthread_mutex_lock(&d->mu);
    rec_pool_state *ps = rec_pool_state_get(d, name, false);
    if (ps && ps->counts_since > 0 && ps->counts_rv && *rv && !strcmp(ps->counts_rv, rv)) {
        double due = counts_due(ps);
        wait = due > now ? due - now : 0;
    }
    pthread_mutex_unlock(&d->mu);
    free(rv);
    return wait;
}

/* A count-only change of the pool (cached at rv): how long it still waits
 * (0: write now). Out of memory: no wait. */
static double counts_wait(rec_domain *d, const char *name, const char *rv, double now)
{
    double wait = 0;
    pthread_mutex_lock(&d->mu);
    rec_pool_state *ps = rec_pool_state_get(d, name, true);
    if (ps) {
        if (ps->counts_since <= 0)
            ps->counts_since = now;
        if (!ps->counts_rv || strcmp(ps->counts_rv, rv ? rv : "")) {
            free(ps->counts_rv);
            ps->counts_rv = strdup(rv ? rv : "");
        }
        double due = counts_due(ps);
        if (due <= now && ps->counts_turn <= 0) {
            /* Ready to go: take the domain's next turn (now, when free). */
            ps->counts_turn = d->counts_next > now ? d->counts_next : now;
            d->counts_next = ps->counts_turn + 1.0 / REC_POOL_COUNTS_PER_S;
            due = counts_due(ps);
        }
        wait = due > now ? due - now : 0;
    }
    pthread_mutex_unlock(&d->mu);
    return wait;
}

/* Nothing of the pool's status waits any more; written: at now. */
static void counts_settled(rec_domain *d, const char *name, bool written, double now)
{
    pthread_mutex_lock(&d->mu);
    rec_pool_state *ps = rec_pool_state_get(d, name, written);
    if (ps) {
        ps->counts_since = 0;
        ps->counts_turn = 0;
        free(ps->counts_rv);
        ps->counts_rv = NULL;
        if (written)
            ps->last_status_write = now;
    }
    pthread_mutex_unlock(&d->mu);
}

/* Events for trouble and for the recovery from it, not for every new pool. */
static void pool_event(rec_domain *d, json_object *cur, json_object *old_ready,
                       json_object *new_ready)
{
    const char *st = cond_field(new_ready, "status");
    const char *was = cond_field(old_ready, "status");
    bool ok = st && !strcmp(st, REC_COND_TRUE);
    bool was_ok = !old_ready || (was && !strcmp(was, REC_COND_TRUE));
    bool moved = !old_ready || strcmp(rec_nz(was), rec_nz(st)) != 0 ||
                 strcmp(rec_nz(cond_field(old_ready, "reason")),
                        rec_nz(cond_field(new_ready, "reason"))) != 0;
    if (new_ready && moved && (!ok || !was_ok))
        (void)rec_event(d->events, cur, d->def->api_version, d->def->pool_kind,
                        ok ? REC_EVENT_NORMAL : REC_EVENT_WARNING,
                        rec_nz(cond_field(new_ready, "reason")), "%s",
                        rec_nz(cond_field(new_ready, "message")));
}

/* Write a pool's status (consumed) if it changed; Event on a Ready transition. */
static ctl_result pool_write_status(rec_domain *d, const kc_ref *ref, json_object *cur,
                                    json_object *new_status)
{
    json_object *cached_status = rec_obj_at(cur, "status");
    if (!pv_json_add_i64(new_status, "observedGeneration", rec_obj_generation(cur))) {
        json_object_put(new_status);
        return ctl_error(KC_ERR_NOMEM, "out of memory");
    }
    double now = pv_clock_monotonic();
    if (cached_status && json_object_equal(cached_status, new_status)) {
        counts_settled(d, ref->name, false, now);
        json_object_put(new_status);
        return ctl_done();
    }
    json_object *old_ready = rec_get_condition(cached_status, REC_COND_READY);
    json_object *new_ready = rec_get_condition(new_status, REC_COND_READY);
    double wait = counts_only(d, cached_status, new_status)
                      ? counts_wait(d, ref->name, rec_obj_str(cur, "metadata.resourceVersion"), now)
                      : 0;
    if (wait > 0) {
        json_object_put(new_status);
        return ctl_requeue_after(wait);
    }

    kc_error err = KC_ERROR_INIT;
    bool written = false;
    const char *before_rv = rec_obj_str(cur, "metadata.resourceVersion");
    /* A compact store's read, or the server's answer to the finalizer
     * patch, is ours alone; a shared store's object is not. */
    int rc = d->def->pools_compact
                 ? rec_update_status_lent(d->client, ref, cur, new_status, NULL, &written, &err)
                 : rec_update_status(d->client, ref, cur, new_status, NULL, &written, &err);
    ctl_result res = ctl_done();
    if (rc == KC_OK && written) {
        rec_stale_note(d->stale, rec_obj_str(cur, "metadata.uid"), before_rv);
        counts_settled(d, ref->name, true, now);
        pool_event(d, cur, old_ready, new_ready);
    } else if (rc == KC_ERR_CONFLICT) {
        res = ctl_requeue();
    } else if (rc != KC_OK && rc != KC_ERR_NOT_FOUND) {
        res = rec_api_error("writing the pool status", rc, &err);
    }
    kc_error_clear(&err);
    json_object_put(new_status);
    return res;
}

/* Counts of the pool (pool NULL: invalid spec) and how many slots are held,
 * in-flight creations included (those past REC_INFLIGHT_TTL dropped first);
 * *expiry (may be NULL): seconds until the oldest in-flight creation left
 * expires, 0 when there is none. */
static void pool_counts(rec_domain *d, const char *name, json_object *pool_obj, const void *pool,
                        rec_pool_counts *counts, int64_t *n_held, double *expiry)
{
    memset(counts, 0, sizeof *counts);
    if (expiry)
        *expiry = 0;
    pthread_mutex_lock(&d->mu);
    rec_pool_state *ps = rec_pool_state_get(d, name, pool != NULL);
    if (ps) {
        double now = pv_clock_monotonic();
        rec_inflight_prune(ps, now);
        for (size_t i = 0; expiry && i < ps->n_inflight; i++) {
            double left = ps->inflight[i].at + REC_INFLIGHT_TTL - now;
            if (*expiry == 0 || left < *expiry)
                *expiry = left > 0 ? left : 0.001;
        }
        d->def->set_counts(ps->used, pool_obj, pool, counts);
        const char *scope = rec_scoped(d->def) ? rec_pool_scope(d->def, pool_obj) : NULL;
        rec_scope_state *ss = scope ? rec_scope_state_get(d, scope, false) : NULL;
        if (ss && pool && d->def->scope_counts)
            d->def->scope_counts(ps->used, ss->used, pool, counts);
        counts->scope = scope;
    } else {
        void *empty = NULL;
        memset(counts, 0, sizeof *counts);
        if (d->def->set_new(&empty) == KC_OK)
            d->def->set_counts(empty, pool_obj, pool, counts);
        d->def->set_free(empty);
    }
    *n_held = counts->allocated + (ps ? (int64_t)ps->n_inflight : 0);
    pthread_mutex_unlock(&d->mu);
}

/* Whether the API server still has a Reservation of the pool: 1, 0, or < 0. */
static int pool_has_reservations(rec_domain *d, const char *name, kc_error *err)
{
    char *selector = NULL;
    if (rec_msg(&selector, "%s=%s,%s=%s", REC_LABEL_POOL_KIND, d->def->pool_kind, REC_LABEL_POOL,
                name) != KC_OK)
        return KC_ERR_NOMEM;
    kc_list_opts lo = {.label_selector = selector, .limit = 1};
    json_object *list = NULL;
    int rc = kc_list(d->client, &rec_reservations_ref, &lo, &list, err);
    free(selector);
    if (rc != KC_OK)
        return rc;
    json_object *items = rec_obj_at(list, "items");
    size_t left =
        items && json_object_is_type(items, json_type_array) ? json_object_array_length(items) : 0;
    json_object_put(list);
    return left > 0;
}

/* The pool is being deleted: it goes when nothing of it is held any more. */
static ctl_result pool_deleting(rec_domain *d, const kc_ref *ref, json_object *pool_obj)
{
    const rec_domain_def *def = d->def;
    if (!rec_has_finalizer(pool_obj, REC_FINALIZER))
        return ctl_done();
    void *pool = NULL;
    char *problem = NULL;
    if (def->pool_open(pool_obj, &pool, &problem) != KC_OK)
        return ctl_error(KC_ERR_NOMEM, "out of memory");
    free(problem);
    rec_pool_counts counts;
    int64_t n_held = 0;
    double expiry = 0;
    pool_counts(d, ref->name, pool_obj, pool, &counts, &n_held, &expiry);
    if (pool)
        def->pool_close(pool);
    if (n_held == 0 && def->detail_free) {
        def->detail_free(counts.detail);
        counts.detail = NULL;
    }

    kc_error err = KC_ERROR_INIT;
    int rc;
    if (n_held == 0) {
        /* The cache may lag: ask the API server whether any Reservation is left. */
        rc = pool_has_reservations(d, ref->name, &err);
        if (rc < 0) {
            ctl_result res = rec_api_error("listing the pool's reservations", rc, &err);
            kc_error_clear(&err);
            return res;
        }
        if (rc > 0)
            return ctl_requeue_after(REC_POOL_GONE_RETRY);
        if (def->pool_finalize) {
            ctl_result fin = def->pool_finalize(d->user, pool_obj);
            if (fin.outcome != CTL_DONE)
                return fin;
        }
        rc = rec_ensure_finalizer(d->client, ref, pool_obj, REC_FINALIZER, false, NULL, NULL, &err);
        ctl_result res = ctl_done();
        if (rc == KC_ERR_CONFLICT)
            res = ctl_requeue();
        else if (rc != KC_OK && rc != KC_ERR_NOT_FOUND)
            res = rec_api_error("removing the pool finalizer", rc, &err);
        kc_error_clear(&err);
        return res;
    }

    char **holders = NULL;
    size_t n_holders = 0;
    char *m = NULL;
    rc = pool_holders(d, ref->name, &holders, &n_holders);
    if (rc == KC_OK)
        rc = def->msgs.pool_in_use(n_held, (const char *const *)holders, n_holders, &m);
    for (size_t i = 0; i < n_holders; i++)
        free(holders[i]);
    free(holders);
    json_object *st = NULL;
    if (rc == KC_OK)
        rc = def->pool_status(rec_obj_at(pool_obj, "status"), &counts, REC_COND_FALSE,
                              def->reason_terminating, m, rec_obj_generation(pool_obj), time(NULL),
                              &st);
    free(m);
    if (def->detail_free)
        def->detail_free(counts.detail);
    if (rc != KC_OK)
        return ctl_error(rc, "building the pool status: %s", kc_strerror(rc));
    ctl_result res = pool_write_status(d, ref, pool_obj, st);
    /* A creation of ours still in flight (its Reservation not seen yet) may
     * never show: made and deleted while the watch was down, or never made
     * (the answer lost). No event would wake the pool then: look again when
     * it expires. */
    if (res.outcome == CTL_DONE && expiry > 0)
        res = ctl_requeue_after(expiry + REC_SYNC_RETRY);
    return res;
}

/* Add our finalizer; *cur becomes the server's newer copy (in *updated). */
static ctl_result pool_finalizer(rec_domain *d, const kc_ref *ref, json_object *pool_obj,
                                 json_object **updated, bool *ok)
{
    *ok = true;
    if (rec_has_finalizer(pool_obj, REC_FINALIZER))
        return ctl_done();
    kc_error err = KC_ERROR_INIT;
    int rc =
        rec_ensure_finalizer(d->client, ref, pool_obj, REC_FINALIZER, true, updated, NULL, &err);
    ctl_result res = ctl_done();
    if (rc == KC_ERR_CONFLICT || rc == KC_ERR_INVALID)
        res = ctl_requeue();
    else if (rc != KC_OK && rc != KC_ERR_NOT_FOUND)
        res = rec_api_error("adding the pool finalizer", rc, &err);
    kc_error_clear(&err);
    if (rc != KC_OK) {
        json_object_put(*updated);
        *updated = NULL;
        *ok = false;
    } else if (*updated) {
        rec_stale_note_obj(d->stale, pool_obj);
    }
    return res;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Scoped domains: the other pools of the scope that share slots with pool
 * (usable ones only), sorted by name, into *names (malloc'd strings). */
static int pool_overlaps(rec_domain *d, json_object *pool_obj, const void *pool, char ***names,
                         size_t *n_names)
{
    *names = NULL;
    *n_names = 0;
    const rec_domain_def *def = d->def;
    if (!rec_scoped(def) || !pool || !def->pool_overlap)
        return KC_OK;
    const char *self = rec_obj_str(pool_obj, "metadata.name");
    json_object **objs = NULL;
    size_t n = 0;
    int rc =
        store_by_index(d->pools_store, REC_IDX_SCOPE, rec_pool_scope(def, pool_obj), &objs, &n);
    if (rc != KC_OK)
        return rc;
    char **out = n ? calloc(n, sizeof *out) : NULL;
    if (n && !out)
        rc = KC_ERR_NOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n && rc == KC_OK; i++) {
        const char *other = rec_obj_str(objs[i], "metadata.name");
        if (!other || (self && !strcmp(other, self)))
            continue;
        rec_open_pool *op = NULL;
        if ((rc = rec_pool_open(d, objs[i], &op)) != KC_OK)
            break;
        if (op->pool && def->pool_overlap(pool, op->pool) && !(out[k++] = strdup(other)))
            rc = KC_ERR_NOMEM;
        rec_pool_put(d, op);
    }
    store_objs_free(objs, n);
    if (rc != KC_OK) {
        for (size_t i = 0; i < k; i++)
            free(out[i]);
        free(out);
        return rc;
    }
    if (k > 1)
        qsort(out, k, sizeof *out, cmp_str);
    *names = out;
    *n_names = k;
    return KC_OK;
}

static ctl_result pool_live(rec_domain *d, const kc_ref *ref, json_object *cur)
{
    const rec_domain_def *def = d->def;
    void *pool = NULL;
    char *problem = NULL;
    if (def->pool_open(cur, &pool, &problem) != KC_OK)
        return ctl_error(KC_ERR_NOMEM, "out of memory");
    rec_pool_counts counts;
    int64_t n_held;
    pool_counts(d, ref->name, cur, pool, &counts, &n_held, NULL);
    char **overlaps = NULL;
    size_t n_overlaps = 0;
    int rc = pool_overlaps(d, cur, pool, &overlaps, &n_overlaps);
    counts.overlaps = (const char *const *)overlaps;
    counts.n_overlaps = n_overlaps;
    char *m = NULL;
    const char *trouble = NULL;
    if (rc == KC_OK && pool && def->pool_check)
        rc = def->pool_check(d->user, cur, pool, &trouble, &m);
    if (rc == KC_OK && !trouble)
        rc = pool ? def->msgs.pool_valid(pool, &m)
                  : rec_msg(&m, "%s", problem ? problem : "the spec is invalid");
    bool ok = pool && !trouble;
    json_object *st = NULL;
    if (rc == KC_OK)
        rc = def->pool_status(rec_obj_at(cur, "status"), &counts,
                              ok ? REC_COND_TRUE : REC_COND_FALSE,
                              ok        ? def->reason_valid
                              : trouble ? trouble
                                        : def->reason_invalid,
                              m, rec_obj_generation(cur), time(NULL), &st);
    free(m);
    free(problem);
    for (size_t i = 0; i < n_overlaps; i++)
        free(overlaps[i]);
    free(overlaps);
    if (def->detail_free)
        def->detail_free(counts.detail);
    double recheck = pool && def->pool_recheck ? def->pool_recheck(pool) : 0;
    /* Trouble from outside the pool (a node that does not exist yet) ends
     * without an event of the pool: look again. */
    if (trouble && (recheck <= 0 || recheck > REC_POOL_TROUBLE_RECHECK))
        recheck = REC_POOL_TROUBLE_RECHECK;
    if (pool)
        def->pool_close(pool);
    if (rc != KC_OK)
        return ctl_error(rc, "building the pool status: %s", kc_strerror(rc));
    ctl_result res = pool_write_status(d, ref, cur, st);
    if (res.outcome == CTL_DONE && recheck > 0)
        res = ctl_requeue_after(recheck);
    return res;
}

ctl_result rec_pool_reconcile(const ctl_ctx *ctx, const char *namespace_, const char *name,
                              void *user)
{
    (void)ctx;
    (void)namespace_;
    rec_domain *d = user;
    if (!rec_caches_ready(d))
        return ctl_requeue_after(REC_SYNC_RETRY);
    json_object *pool_obj = NULL;
    double waiting = counts_waiting(d, name);
    if (waiting > 0)
        return ctl_requeue_after(waiting);
    int rc = store_get(d->pools_store, name, &pool_obj);
    if (rc == KC_ERR_NOT_FOUND)
        return ctl_done();
    if (rc != KC_OK)
        return ctl_error(rc, "reading the pool cache: %s", kc_strerror(rc));
    ctl_result res = ctl_done();
    kc_ref ref = d->def->pools_ref;
    ref.name = name;
    if (rec_stale_check_obj(d->stale, pool_obj)) {
        /* our newer write is on its way */
    } else if (rec_obj_is_deleting(pool_obj)) {
        res = pool_deleting(d, &ref, pool_obj);
    } else {
        json_object *updated = NULL;
        bool ok = false;
        res = pool_finalizer(d, &ref, pool_obj, &updated, &ok);
        if (ok)
            res = pool_live(d, &ref, updated ? updated : pool_obj);
        json_object_put(updated);
    }
    store_obj_put(pool_obj);
    return res;
}

/* ---- the orphan sweep ------------------------------------------------------------- */

/*
 * Whether the claim ns/name with this uid is in the claims cache (a lookup
 * by key, not an index of uids: that index would cost ~180 bytes a claim).
 * Out of memory answers true: the sweep never frees on a doubt.
 */
static bool claim_cached(rec_domain *d, const char *ns, const char *name, const char *uid)
{
    if (!ns || !name)
        return false;
    char *key = NULL;
    if (rec_msg(&key, "%s/%s", ns, name) != KC_OK)
        return true;
    json_object *c = NULL;
    int rc = store_get(d->claims_store, key, &c);
    free(key);
    if (rc != KC_OK && rc != KC_ERR_NOT_FOUND)
        return true;
    bool same = rc == KC_OK && !strcmp(rec_nz(rec_obj_str(c, "metadata.uid")), uid);
    store_obj_put(c);
    return same;
}

ctl_result rec_sweep_reconcile(const ctl_ctx *ctx, const char *namespace_, const char *name,
                               void *user)
{
    (void)ctx;
    (void)namespace_;
    rec_domain *d = user;
    if (!rec_caches_ready(d))
        return ctl_requeue_after(REC_SYNC_RETRY);
    json_object *obj = NULL;
    int rc = store_get(d->resv_store, name, &obj);
    if (rc == KC_ERR_NOT_FOUND)
        return ctl_done();
    if (rc != KC_OK)
        return ctl_error(rc, "reading the reservation cache: %s", kc_strerror(rc));
    const char *ns = rec_obj_str(obj, "spec.claim.namespace");
    const char *claim = rec_obj_str(obj, "spec.claim.name");
    const char *uid = rec_obj_str(obj, "spec.claim.uid");
    ctl_result res = ctl_done();
    bool ours = !d->watch_namespace || (ns && !strcmp(ns, d->watch_namespace));
    if (ours && uid && !claim_cached(d, ns, claim, uid)) {
        /* Not in the cache: only the API server can say the claim is gone. */
        kc_error err = KC_ERROR_INIT;
        bool released = false;
        rc = rec_reserve_sweep_orphan(d->client, obj, &released, &err);
        if (rc != KC_OK)
            res = rec_api_error("sweeping an orphaned reservation", rc, &err);
        else if (released)
            rec_log(d, REC_LOG_INFO, d->def->resv_controller,
                    "released the reservation of a claim that no longer exists",
                    REC_KV("reservation", name, "namespace", rec_nz(ns), "claim", rec_nz(claim),
                           d->def->slot_noun, rec_nz(rec_obj_str(obj, "spec.slot"))));
        kc_error_clear(&err);
    }
    store_obj_put(obj);
    return res;
}
