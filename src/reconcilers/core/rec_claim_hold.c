/*
 * rec_claim_hold - the slots a claim holds: acquire them (a Reservation
 * created), keep the same ones on every replica, complete a round cut short,
 * move a Reservation to its current name, replace an unhealthy slot, and give
 * back what must go only when no status of the claim shows it. Why each step
 * is safe: README.md beside this file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pv_clock.h"
#include "rec_claim_internal.h"
#include "rec_util.h"

void rec_slot_list_clear(slot_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->names[i]);
        free(l->slots[i]);
        free(l->pools[i]);
    }
    free(l->names);
    free(l->slots);
    free(l->pools);
    memset(l, 0, sizeof *l);
}

bool rec_slot_list_has(const slot_list *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->names[i], name))
            return true;
    return false;
}

/* Add name/slot/pool unless name is there. false on allocation failure. */
bool rec_slot_list_add(slot_list *l, const char *name, const char *slot, const char *pool)
{
    if (rec_slot_list_has(l, name))
        return true;
    char **nn = realloc(l->names, (l->n + 1) * sizeof *nn);
    if (!nn)
        return false;
    l->names = nn;
    char **ns = realloc(l->slots, (l->n + 1) * sizeof *ns);
    if (!ns)
        return false;
    l->slots = ns;
    char **np = realloc(l->pools, (l->n + 1) * sizeof *np);
    if (!np)
        return false;
    l->pools = np;
    char *a = strdup(name), *b = strdup(slot), *c = strdup(pool ? pool : "");
    if (!a || !b || !c) {
        free(a);
        free(b);
        free(c);
        return false;
    }
    l->names[l->n] = a;
    l->slots[l->n] = b;
    l->pools[l->n] = c;
    l->n++;
    return true;
}

static void list_remove_at(slot_list *l, size_t i)
{
    free(l->names[i]);
    free(l->slots[i]);
    free(l->pools[i]);
    l->n--;
    l->names[i] = l->names[l->n];
    l->slots[i] = l->slots[l->n];
    l->pools[i] = l->pools[l->n];
}

/* The cached pool is being deleted. */
bool rec_claim_pool_deleting(const claim_run *r)
{
    return r->open ? r->open->deleting : r->pool_obj && rec_obj_is_deleting(r->pool_obj);
}

static int add_inflight(const char *pool, const rec_inflight *e, void *arg)
{
    return rec_slot_list_add(arg, e->name, e->slot, pool) ? KC_OK : KC_ERR_NOMEM;
}

/* What the claim holds: its Reservations in the cache and in flight. */
int rec_claim_load_held(claim_run *r)
{
    rec_slot_list_clear(&r->held);
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
        const char *pool = rec_obj_str(objs[i], "spec.pool.name");
        if (name && slot && kind && pool && !strcmp(kind, r->def->pool_kind) &&
            !rec_slot_list_add(&r->held, name, slot, pool))
            rc = KC_ERR_NOMEM;
    }
    store_objs_free(objs, n);
    if (rc != KC_OK)
        return rc;
    pthread_mutex_lock(&d->mu);
    if (r->def->claim_pool_path) {
        rec_pool_state *ps = rec_pool_state_get(d, r->pool_name, false);
        if (ps) {
            rec_inflight_prune(ps, pv_clock_monotonic());
            for (size_t i = 0; i < ps->n_inflight && rc == KC_OK; i++)
                if (!strcmp(ps->inflight[i].claim_uid, r->uid))
                    rc = add_inflight(ps->name, &ps->inflight[i], &r->held);
        }
    } else {
        rc = rec_inflight_each_of_claim(d, r->uid, add_inflight, &r->held);
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

void rec_claim_forget_inflight(claim_run *r, const char *pool)
{
    pthread_mutex_lock(&r->d->mu);
    rec_pool_state *ps = pool ? rec_pool_state_get(r->d, pool, false) : NULL;
    if (ps)
        rec_inflight_remove_uid(ps, r->uid);
    pthread_mutex_unlock(&r->d->mu);
}

static void inflight_forget_slot(claim_run *r, const char *pool, const char *slot)
{
    pthread_mutex_lock(&r->d->mu);
    rec_pool_state *ps = rec_pool_state_get(r->d, pool, false);
    if (ps)
        (void)rec_inflight_remove_slot(ps, slot, NULL);
    pthread_mutex_unlock(&r->d->mu);
}

int rec_claim_release(claim_run *r, const char *name, bool *released, kc_error *err)
{
    return rec_reserve_release(r->d->client, name, r->uid, released, err);
}

/* Release every slot of l from start on; forget them in flight. */
static ctl_result release_list(claim_run *r, const slot_list *l, size_t start, const char *what)
{
    for (size_t i = start; i < l->n; i++) {
        kc_error err = KC_ERROR_INIT;
        int rc = rec_claim_release(r, l->names[i], NULL, &err);
        if (rc != KC_OK) {
            ctl_result res = rec_api_error(what, rc, &err);
            kc_error_clear(&err);
            return res;
        }
        inflight_forget_slot(r, l->pools[i], l->slots[i]);
    }
    return ctl_done();
}

/* The status (at cur) shows slot of pool. */
static bool status_shows(const char *sp, char *const *ss, size_t n_ss, const char *pool,
                         const char *slot)
{
    if (sp && pool && *pool && strcmp(sp, pool) != 0)
        return false;
    for (size_t j = 0; j < n_ss; j++)
        if (!strcmp(ss[j], slot))
            return true;
    return false;
}

/*
 * Whether the held slots of l may be given back now: only when the claim's
 * latest status does not show any of them. Another replica may have written
 * a status our cache has not seen yet; a slot released while a status shows
 * it can go to another claim, and two claims would show it at once. So the
 * claim is read from the API server (once a run, unless this run wrote it):
 * a newer one than cur -> requeue (the next run decides from it; its watch
 * event comes too); the same -> cur's status is the latest, and a slot it
 * shows stays held (requeue). true: release; false: *res says what instead.
 */
static bool may_release(claim_run *r, const slot_list *l, ctl_result *res)
{
    if (l->n == 0)
        return true;
    if (!r->latest) {
        json_object *got = NULL;
        kc_error err = KC_ERROR_INIT;
        int rc = kc_get(r->d->client, &r->ref, &got, &err);
        if (rc == KC_ERR_NOT_FOUND) {
            *res = ctl_done(); /* gone: what it holds is the sweep's */
        } else if (rc != KC_OK) {
            *res = rec_api_error("reading the claim before giving back a slot", rc, &err);
        } else if (strcmp(rec_nz(rec_obj_str(got, "metadata.resourceVersion")),
                          rec_nz(rec_obj_str(r->cur, "metadata.resourceVersion"))) != 0) {
            rec_log(r->d, REC_LOG_DEBUG, r->logger,
                    "the claim changed since the cache saw it; not giving back slots",
                    REC_KV("namespace", r->ref.namespace_, "name", r->ref.name));
            *res = ctl_requeue();
        } else {
            r->latest = true;
        }
        json_object_put(got);
        kc_error_clear(&err);
        if (!r->latest)
            return false;
    }
    char **ss = NULL;
    size_t n_ss = 0;
    int rc = rec_claim_status_slots(r, &ss, &n_ss);
    if (rc != KC_OK) {
        *res = ctl_error(rc, "out of memory");
        return false;
    }
    const char *sp = rec_claim_status_pool(r);
    bool shown = false;
    for (size_t i = 0; i < l->n && !shown; i++)
        shown = status_shows(sp, ss, n_ss, l->pools[i], l->slots[i]);
    rec_claim_strings_free(ss, n_ss);
    if (shown) {
        *res = ctl_requeue(); /* the next run keeps what status shows */
        return false;
    }
    return true;
}

/* release_list of a live claim's slots, when may_release allows. */
ctl_result rec_claim_release_unshown(claim_run *r, const slot_list *l, const char *what)
{
    ctl_result res = ctl_done();
    if (!may_release(r, l, &res))
        return res;
    return release_list(r, l, 0, what);
}

/*
 * Before the status shows kept, each slot it does not show yet is confirmed:
 * acquired in this run, or held on the API server now. The Reservations cache
 * (or this process's in-flight list) may still show one another replica has
 * given back since. true: write; false: *res says what instead.
 */
static bool kept_confirmed(claim_run *r, const slot_list *kept, ctl_result *res)
{
    char **ss = NULL;
    size_t n_ss = 0;
    int rc = rec_claim_status_slots(r, &ss, &n_ss);
    if (rc != KC_OK) {
        *res = ctl_error(rc, "out of memory");
        return false;
    }
    const char *sp = rec_claim_status_pool(r);
    bool ok = true;
    for (size_t i = 0; i < kept->n && ok; i++) {
        if (rec_slot_list_has(&r->acquired, kept->names[i]) ||
            status_shows(sp, ss, n_ss, kept->pools[i], kept->slots[i]))
            continue;
        bool held = false;
        kc_error err = KC_ERROR_INIT;
        rc = rec_reserve_held(r->d->client, kept->names[i], r->uid, &held, &err);
        if (rc != KC_OK) {
            *res = rec_api_error("confirming a held slot", rc, &err);
            ok = false;
        } else if (!held) {
            rec_log(r->d, REC_LOG_DEBUG, r->logger,
                    "a Reservation the cache shows is gone; again when the cache has caught up",
                    REC_KV("namespace", r->ref.namespace_, "name", r->ref.name, "reservation",
                           kept->names[i]));
            *res = ctl_requeue();
            ok = false;
        } else if (!rec_slot_list_add(&r->acquired, kept->names[i], kept->slots[i],
                                      kept->pools[i])) {
            *res = ctl_error(KC_ERR_NOMEM, "out of memory");
            ok = false;
        }
        kc_error_clear(&err);
    }
    rec_claim_strings_free(ss, n_ss);
    return ok;
}

/*
 * Acquire slot of the pool for the claim. 0 acquired (noted in flight and,
 * when got is given, added to it), REC_TAKEN (holder filled), or a negative
 * kc_status (err filled).
 */
int rec_claim_acquire(claim_run *r, const char *slot, slot_list *got, rec_reservation *holder,
                      kc_error *err)
{
    memset(holder, 0, sizeof *holder);
    const rec_domain_def *def = r->def;
    const char *space = rec_lock_space(def, r->pool_name, r->pool_obj);
    if (!space)
        return KC_ERR_INVALID_ARG; /* a scoped domain without the pool: never here */
    char *name = NULL, *canon = NULL;
    int rc = def->slot_name(space, slot, &name, &canon);
    if (rc != KC_OK)
        return rc;
    rec_claim_ref cref = {.kind = def->claim_kind,
                          .namespace_ = r->ref.namespace_,
                          .name = r->ref.name,
                          .uid = r->uid};
    rec_reserve_extra scope = {
        .scope_key = def->resv_scope_key, .scope_label = def->resv_scope_label, .scope = space};
    rc = rec_reserve_acquire_extra(r->d->client, def->pool_kind, r->pool_name, name, canon, &cref,
                                   0, rec_scoped(def) ? &scope : NULL, holder, err);
    if (rc == KC_OK) {
        inflight_note(r, name, canon);
        if ((got && !rec_slot_list_add(got, name, canon, r->pool_name)) ||
            !rec_slot_list_add(&r->acquired, name, canon, r->pool_name))
            rc = KC_ERR_NOMEM;
    }
    free(name);
    free(canon);
    return rc;
}

/* Which of the held slots to keep: up to r->count, those status names first,
 * then def->choose_keep's order, so every replica keeps the same. keep[i]
 * true for the kept. */
static int choose_kept(claim_run *r, bool *keep, size_t *n_keep)
{
    const slot_list *h = &r->held;
    *n_keep = 0;
    char **ss = NULL;
    size_t n_ss = 0;
    int rc = rec_claim_status_slots(r, &ss, &n_ss);
    if (rc != KC_OK)
        return rc;
    for (size_t j = 0; j < n_ss && *n_keep < (size_t)r->count; j++)
        for (size_t i = 0; i < h->n; i++)
            if (!keep[i] && !strcmp(h->slots[i], ss[j])) {
                keep[i] = true;
                (*n_keep)++;
                break;
            }
    rec_claim_strings_free(ss, n_ss);
    const char **rest = h->n ? malloc(h->n * sizeof *rest) : NULL;
    size_t *idx = h->n ? malloc(h->n * sizeof *idx) : NULL;
    if (h->n && (!rest || !idx)) {
        free(rest);
        free(idx);
        return KC_ERR_NOMEM;
    }
    while (*n_keep < (size_t)r->count) {
        size_t n_rest = 0;
        for (size_t i = 0; i < h->n; i++)
            if (!keep[i]) {
                rest[n_rest] = h->slots[i];
                idx[n_rest++] = i;
            }
        if (n_rest == 0)
            break;
        size_t k = r->def->choose_keep(rest, n_rest, NULL, r->wanted);
        keep[idx[k < n_rest ? k : 0]] = true;
        (*n_keep)++;
    }
    free(rest);
    free(idx);
    return KC_OK;
}

/* Pick a free slot under d->mu (used set + in flight + skip). */
static int pick_locked(claim_run *r, char *const *skip_in, size_t n_skip_in, char **out)
{
    rec_domain *d = r->d;
    pthread_mutex_lock(&d->mu);
    rec_pool_state *ps = rec_pool_state_get(d, r->pool_name, true);
    int rc = KC_ERR_NOMEM;
    if (ps) {
        rec_inflight_prune(ps, pv_clock_monotonic());
        size_t n_skip = n_skip_in + ps->n_inflight;
        const char **skip = n_skip ? malloc(n_skip * sizeof *skip) : NULL;
        if (!n_skip || skip) {
            for (size_t i = 0; i < n_skip_in; i++)
                skip[i] = skip_in[i];
            for (size_t i = 0; i < ps->n_inflight; i++)
                skip[n_skip_in + i] = ps->inflight[i].slot;
            /* A scoped domain picks from what the whole scope holds. */
            const void *used = ps->used;
            if (rec_scoped(r->def)) {
                const char *scope = rec_lock_space(r->def, r->pool_name, r->pool_obj);
                rec_scope_state *ss = scope ? rec_scope_state_get(d, scope, true) : NULL;
                used = ss ? ss->used : NULL;
            }
            rc = used ? r->def->pick(r->pool, used, ps->requested, skip, n_skip, r->uid, r->want,
                                     out)
                      : KC_ERR_NOMEM;
        }
        free(skip);
    }
    pthread_mutex_unlock(&d->mu);
    return rc;
}

/*
 * Acquire need more slots of the pool into got, skipping those of have.
 * A slot another claim won (our cache lagged) is skipped and another tried,
 * REC_ATTEMPTS times in all.
 */
fill_outcome rec_claim_fill(claim_run *r, const slot_list *have, size_t need, slot_list *got,
                            ctl_result *res)
{
    size_t cap = have->n + need + REC_ATTEMPTS;
    char **skip = malloc(cap * sizeof *skip);
    if (!skip) {
        *res = ctl_error(KC_ERR_NOMEM, "out of memory");
        return FILL_RESULT;
    }
    size_t n_skip = 0, n_tried = 0;
    for (size_t i = 0; i < have->n; i++)
        skip[n_skip++] = have->slots[i];
    fill_outcome out = FILL_DONE;
    char *tried[REC_ATTEMPTS];
    while (got->n < need) {
        if (n_tried == REC_ATTEMPTS) {
            rec_log(r->d, REC_LOG_DEBUG, r->logger, "every slot tried was taken; requeue",
                    REC_KV("namespace", r->ref.namespace_, "name", r->ref.name));
            *res = ctl_requeue();
            out = FILL_RESULT;
            break;
        }
        size_t n = n_skip;
        for (size_t i = 0; i < got->n; i++)
            skip[n++] = got->slots[i];
        char *slot = NULL;
        int rc = pick_locked(r, skip, n, &slot);
        if (rc == REC_NO_SLOT) {
            out = FILL_NONE;
            break;
        }
        if (rc != KC_OK) {
            *res = ctl_error(rc, "out of memory");
            out = FILL_RESULT;
            break;
        }
        rec_reservation holder;
        kc_error err = KC_ERROR_INIT;
        rc = rec_claim_acquire(r, slot, got, &holder, &err);
        rec_reservation_clear(&holder);
        if (rc == REC_TAKEN) {
            tried[n_tried++] = slot; /* our cache lags: that one is used */
            skip[n_skip++] = slot;
            kc_error_clear(&err);
            continue;
        }
        free(slot);
        if (rc == KC_ERR_CONFLICT) {
            *res = ctl_requeue();
            out = FILL_RESULT;
        } else if (rc != KC_OK) {
            *res = rec_api_error("reserving a slot", rc, &err);
            out = FILL_RESULT;
        }
        kc_error_clear(&err);
        if (out != FILL_DONE)
            break;
    }
    for (size_t i = 0; i < n_tried; i++)
        free(tried[i]);
    free(skip);
    return out;
}

/*
 * After a round acquired got: if the claim now holds more than it wants (a
 * lagging cache hid some), give the round back and requeue; the next
 * reconcile keeps what every replica keeps. Else what it holds is settled.
 */
static ctl_result claim_settle(claim_run *r, const slot_list *got, bool *settled)
{
    *settled = false;
    int rc = rec_claim_load_held(r);
    if (rc != KC_OK)
        return ctl_error(rc, "listing the claim's reservations: %s", kc_strerror(rc));
    if (r->held.n <= (size_t)r->count) {
        *settled = true;
        return ctl_done();
    }
    ctl_result res = rec_claim_release_unshown(r, got, "releasing a second reservation");
    return res.outcome == CTL_DONE ? ctl_requeue() : res;
}

/* After a round: settle, and when settled go on from what is held. */
ctl_result rec_claim_after_round(claim_run *r, const slot_list *got)
{
    bool settled = false;
    ctl_result res = claim_settle(r, got, &settled);
    if (!settled)
        return res;
    return rec_claim_holds(r);
}

/* Put name/slot/pool in place of entry i of l (the old strings freed). */
static bool list_set(slot_list *l, size_t i, const char *name, const char *slot, const char *pool)
{
    char *a = strdup(name), *b = strdup(slot), *c = strdup(pool ? pool : "");
    if (!a || !b || !c) {
        free(a);
        free(b);
        free(c);
        return false;
    }
    free(l->names[i]);
    free(l->slots[i]);
    free(l->pools[i]);
    l->names[i] = a;
    l->slots[i] = b;
    l->pools[i] = c;
    return true;
}

/*
 * Swap held slots the domain wants replaced (a device turned unhealthy) for
 * free ones in kept; the replaced go to *replaced, given back once a status
 * without them is written. A slot with no replacement is kept.
 */
static ctl_result claim_replace(claim_run *r, slot_list *kept, slot_list *replaced)
{
    if (!r->def->slot_replace || !r->pool)
        return ctl_done();
    for (size_t i = 0; i < kept->n; i++) {
        if (!r->def->slot_replace(r->pool, r->want, kept->slots[i]))
            continue;
        slot_list got = {0};
        ctl_result res = ctl_done();
        fill_outcome fo = rec_claim_fill(r, kept, 1, &got, &res);
        if (fo == FILL_DONE && got.n == 1) {
            char *m = NULL;
            if (rec_msg(&m, "Replaced %s %s of %s %s, which is unhealthy, with %s",
                        r->def->slot_noun, kept->slots[i], r->def->pool_kind, r->pool_name,
                        got.slots[0]) == KC_OK)
                rec_claim_event(r, REC_EVENT_NORMAL, rec_nz(r->def->reason_replaced), m);
            free(m);
            if (!rec_slot_list_add(replaced, kept->names[i], kept->slots[i], kept->pools[i]) ||
                !list_set(kept, i, got.names[0], got.slots[0], got.pools[0]))
                res = ctl_error(KC_ERR_NOMEM, "out of memory");
        }
        rec_slot_list_clear(&got);
        if (fo == FILL_RESULT || res.outcome != CTL_DONE)
            return res;
    }
    return ctl_done();
}

/*
 * Scoped domains: a held Reservation of the claim's pool under a name an
 * earlier version made (IP: per pool, before networks) moves to the current
 * name, the lock across the scope: the current name is acquired first, then
 * the old one released, so the slot is never unheld in between. When another
 * claim holds the current name, the slot was handed out twice under the old
 * names: this claim gives it up (Event) and gets another. r->held follows.
 */
static ctl_result claim_rename(claim_run *r)
{
    const rec_domain_def *def = r->def;
    const char *space = rec_lock_space(def, r->pool_name, r->pool_obj);
    if (!rec_scoped(def) || !space)
        return ctl_done();
    for (size_t i = 0; i < r->held.n;) {
        char *cur = NULL;
        if (strcmp(r->held.pools[i], r->pool_name) != 0 ||
            def->slot_name(space, r->held.slots[i], &cur, NULL) != KC_OK ||
            !strcmp(cur, r->held.names[i])) {
            free(cur);
            i++;
            continue;
        }
        int rc = KC_OK;
        bool lost = false;
        rec_reservation holder = {0};
        kc_error err = KC_ERROR_INIT;
        if (!rec_slot_list_has(&r->held, cur)) {
            rc = rec_claim_acquire(r, r->held.slots[i], NULL, &holder, &err);
            lost = rc == REC_TAKEN;
            if (lost)
                rc = KC_OK;
        }
        if (rc == KC_OK)
            rc = rec_claim_release(r, r->held.names[i], NULL, &err);
        if (rc != KC_OK) {
            ctl_result res = rc == KC_ERR_CONFLICT
                                 ? ctl_requeue()
                                 : rec_api_error("renaming a reservation", rc, &err);
            rec_reservation_clear(&holder);
            kc_error_clear(&err);
            free(cur);
            return res;
        }
        rec_log(r->d, REC_LOG_INFO, r->logger,
                lost ? "gave up a slot held twice under earlier names"
                     : "moved a reservation to its current name",
                REC_KV("namespace", r->ref.namespace_, "name", r->ref.name, "from",
                       r->held.names[i], "to", cur));
        if (lost) {
            char *m = NULL;
            if (rec_msg(&m,
                        "%s was also held by %s %s/%s through %s %s; it keeps it, this claim "
                        "takes another %s",
                        r->held.slots[i], def->claim_kind, rec_nz(holder.claim_namespace),
                        rec_nz(holder.claim_name), def->pool_kind, rec_nz(holder.pool_name),
                        def->slot_noun) == KC_OK)
                rec_claim_event(r, REC_EVENT_WARNING, def->reason_lost, m);
            free(m);
        }
        rec_reservation_clear(&holder);
        kc_error_clear(&err);
        if (lost || rec_slot_list_has(&r->held, cur)) {
            list_remove_at(&r->held, i);
            free(cur);
        } else {
            free(r->held.names[i]);
            r->held.names[i] = cur;
            i++;
        }
    }
    return ctl_done();
}

/* The claim holds slots: keep r->count of them in one pool, give back the
 * rest, complete or replace what is missing, write the status. */
ctl_result rec_claim_holds(claim_run *r)
{
    const rec_domain_def *def = r->def;
    slot_list other = {0}, kept = {0}, extra = {0}, replaced = {0};
    ctl_result res = claim_rename(r);
    if (res.outcome != CTL_DONE)
        return res;
    bool *keep = calloc(r->held.n ? r->held.n : 1, sizeof *keep);
    if (!keep)
        return ctl_error(KC_ERR_NOMEM, "out of memory");
    /* Slots of another pool (a claim that chose before its cache caught
     * up) go; the pool is the first held one's unless status names another. */
    slot_list in_pool = {0};
    bool oom = false;
    for (size_t i = 0; i < r->held.n; i++) {
        slot_list *to = strcmp(r->held.pools[i], r->pool_name) ? &other : &in_pool;
        oom = oom || !rec_slot_list_add(to, r->held.names[i], r->held.slots[i], r->held.pools[i]);
    }
    if (!oom) {
        slot_list saved = r->held;
        r->held = in_pool;
        size_t n_keep = 0;
        int rc = choose_kept(r, keep, &n_keep);
        for (size_t i = 0; i < r->held.n && rc == KC_OK; i++) {
            slot_list *to = keep[i] ? &kept : &extra;
            if (!rec_slot_list_add(to, r->held.names[i], r->held.slots[i], r->held.pools[i]))
                rc = KC_ERR_NOMEM;
        }
        r->held = saved;
        oom = rc != KC_OK;
    }
    rec_slot_list_clear(&in_pool);
    free(keep);
    if (oom) {
        res = ctl_error(KC_ERR_NOMEM, "out of memory");
        goto out;
    }
    res = rec_claim_release_unshown(r, &other, "releasing a reservation of another pool");
    if (res.outcome == CTL_DONE)
        res = rec_claim_release_unshown(r, &extra, "releasing a second reservation");
    if (res.outcome != CTL_DONE)
        goto out;
    for (size_t i = 0; i < extra.n; i++)
        rec_log(r->d, REC_LOG_INFO, r->logger, "released a second reservation of a claim",
                REC_KV("namespace", r->ref.namespace_, "name", r->ref.name, def->slot_noun,
                       extra.slots[i]));

    if (kept.n < (size_t)r->count && r->pool && !rec_claim_pool_deleting(r)) {
        /* Complete the claim (a round cut short by a crash, a slot lost). */
        slot_list got = {0};
        fill_outcome fo = rec_claim_fill(r, &kept, (size_t)r->count - kept.n, &got, &res);
        if (fo == FILL_DONE) {
            res = rec_claim_after_round(r, &got);
            rec_slot_list_clear(&got);
            goto out;
        }
        if (fo == FILL_NONE) {
            res = rec_claim_release_unshown(r, &got, "giving back a partial allocation");
            /* Never Ready: all or nothing, so two waiting claims do not
             * starve each other holding half of what each needs. */
            char **ss = NULL;
            size_t n_ss = 0;
            if (res.outcome == CTL_DONE && rec_claim_status_slots(r, &ss, &n_ss) == KC_OK &&
                n_ss == 0)
                res = rec_claim_release_unshown(r, &kept, "giving back a partial allocation");
            rec_claim_strings_free(ss, n_ss);
            if (res.outcome == CTL_DONE)
                res = rec_claim_exhausted(r);
        }
        rec_slot_list_clear(&got);
        goto out;
    }
    if (kept.n < (size_t)r->count) {
        res = rec_claim_exhausted(r);
        goto out;
    }
    res = claim_replace(r, &kept, &replaced);
    if (res.outcome != CTL_DONE)
        goto out;
    if (!kept_confirmed(r, &kept, &res))
        goto out;
    res = rec_claim_ready(r, kept.slots, kept.n);
    /* The replaced go once a status without them is the latest. */
    if (res.outcome == CTL_DONE)
        res = rec_claim_release_unshown(r, &replaced, "releasing a replaced slot");
out:
    rec_slot_list_clear(&other);
    rec_slot_list_clear(&kept);
    rec_slot_list_clear(&extra);
    rec_slot_list_clear(&replaced);
    return res;
}
