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
#include "rec_domain_internal.h"
#include "rec_reserve.h"
#include "rec_util.h"

/* A list of slots with their Reservation names and pools. */
typedef struct slot_list {
    char **names;
    char **slots;
    char **pools;
    size_t n;
} slot_list;

typedef struct claim_run {
    rec_domain *d;
    const rec_domain_def *def;
    const char *logger;
    kc_ref ref;
    json_object *claim; /* store object (store_obj_put) */
    json_object *cur;   /* what status writes go against: claim, or the server's newer copy */
    bool cur_owned;     /* cur is ours to json_object_put */
    const char *uid, *wanted;
    const char *pool_name; /* the pool: spec's, chosen, or the one held from */
    char *pool_owned;      /* pool_name when not borrowed from the claim */
    int64_t generation;
    int64_t count;         /* slots wanted */
    void *want;            /* def->want_open's, or NULL */
    json_object *pool_obj; /* store object or NULL (pools_compact: NULL when open is set) */
    rec_open_pool *open;   /* rec_pool_open's for the cached pool, or NULL */
    bool pool_cached;      /* the pool is in the cache */
    void *pool;            /* open->pool: NULL when missing or invalid */
    const char *pool_problem;
    slot_list held;
    slot_list acquired; /* Reservations this run created or found ours on the server */
    bool latest;        /* cur is the server's copy as of this run (read or written) */
    bool pool_chosen;   /* pool_name was chosen by this run (choose_pool) */
} claim_run;

static void list_clear(slot_list *l)
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

static bool list_has_name(const slot_list *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->names[i], name))
            return true;
    return false;
}

/* Add name/slot/pool unless name is there. false on allocation failure. */
static bool list_add(slot_list *l, const char *name, const char *slot, const char *pool)
{
    if (list_has_name(l, name))
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
static bool pool_is_deleting(const claim_run *r)
{
    return r->open ? r->open->deleting : r->pool_obj && rec_obj_is_deleting(r->pool_obj);
}

static void claim_run_clear(claim_run *r)
{
    list_clear(&r->held);
    list_clear(&r->acquired);
    if (r->cur_owned)
        json_object_put(r->cur);
    store_obj_put(r->claim);
    store_obj_put(r->pool_obj);
    rec_pool_put(r->d, r->open);
    if (r->want)
        r->def->want_close(r->want);
    free(r->pool_owned);
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

/* Every slot the claim's status names (a list of malloc'd strings). */
static int status_slots(claim_run *r, char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (r->def->status_slots)
        return r->def->status_slots(cur_status(r), out, n);
    char *one = r->def->status_slot(cur_status(r));
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

static void strings_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* The pool status says the claim holds from: the spec's when claims name
 * their pool, else status_pool_path. */
static const char *status_pool(claim_run *r)
{
    if (r->def->claim_pool_path)
        return r->pool_name;
    return r->def->status_pool_path ? rec_obj_str(r->cur, r->def->status_pool_path) : NULL;
}

static int add_inflight(const char *pool, const rec_inflight *e, void *arg)
{
    return list_add(arg, e->name, e->slot, pool) ? KC_OK : KC_ERR_NOMEM;
}

/* What the claim holds: its Reservations in the cache and in flight. */
static int load_held(claim_run *r)
{
    list_clear(&r->held);
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
            !list_add(&r->held, name, slot, pool))
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

static void inflight_forget_claim(claim_run *r, const char *pool)
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
    /* r->cur is a read of the compact claims store or a server's answer: ours. */
    int rc =
        rec_update_status_lent(r->d->client, &r->ref, r->cur, new_status, &out, &written, &err);
    json_object_put(new_status);
    ctl_result res = ctl_done();
    if (rc == KC_OK) {
        if (written)
            rec_stale_note(r->d->stale, r->uid, before_rv);
        if (transition && written)
            claim_event(r, ev_type, ev_reason, ev_message);
        if (written && out) { /* what the rest of this run writes against */
            set_cur(r, out);
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

/* Ready with slots[0..n) (n == r->count). */
static ctl_result claim_ready(claim_run *r, char *const *slots, size_t n)
{
    json_object *st = NULL;
    char *ev = NULL;
    int rc;
    if (r->def->claim_ready_n)
        rc = r->def->claim_ready_n(cur_status(r), r->pool_name, r->pool_obj, r->pool, r->want,
                                   (const char *const *)slots, n, r->generation, time(NULL), &st,
                                   &ev);
    else
        rc = r->def->claim_ready(cur_status(r), r->pool_name, r->pool_obj, r->pool, slots[0],
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

/* Release every slot of l from start on; forget them in flight. */
static ctl_result release_list(claim_run *r, const slot_list *l, size_t start, const char *what)
{
    for (size_t i = start; i < l->n; i++) {
        kc_error err = KC_ERROR_INIT;
        int rc = claim_release(r, l->names[i], NULL, &err);
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
    int rc = status_slots(r, &ss, &n_ss);
    if (rc != KC_OK) {
        *res = ctl_error(rc, "out of memory");
        return false;
    }
    const char *sp = status_pool(r);
    bool shown = false;
    for (size_t i = 0; i < l->n && !shown; i++)
        shown = status_shows(sp, ss, n_ss, l->pools[i], l->slots[i]);
    strings_free(ss, n_ss);
    if (shown) {
        *res = ctl_requeue(); /* the next run keeps what status shows */
        return false;
    }
    return true;
}

/* release_list of a live claim's slots, when may_release allows. */
static ctl_result release_unshown(claim_run *r, const slot_list *l, const char *what)
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
    int rc = status_slots(r, &ss, &n_ss);
    if (rc != KC_OK) {
        *res = ctl_error(rc, "out of memory");
        return false;
    }
    const char *sp = status_pool(r);
    bool ok = true;
    for (size_t i = 0; i < kept->n && ok; i++) {
        if (list_has_name(&r->acquired, kept->names[i]) ||
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
        } else if (!list_add(&r->acquired, kept->names[i], kept->slots[i], kept->pools[i])) {
            *res = ctl_error(KC_ERR_NOMEM, "out of memory");
            ok = false;
        }
        kc_error_clear(&err);
    }
    strings_free(ss, n_ss);
    return ok;
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
    int rc = load_held(r);
    if (rc != KC_OK)
        return ctl_error(rc, "listing the claim's reservations: %s", kc_strerror(rc));
    /* What status says it holds, in case the cache has not seen it (a scoped
     * domain needs the pool's scope for the names: the cached pool's). */
    const char *sp = status_pool(r);
    char **ss = NULL;
    size_t n_ss = 0;
    json_object *sp_obj = NULL;
    if (sp && rec_scoped(def))
        (void)store_get(r->d->pools_store, sp, &sp_obj);
    const char *space = sp ? rec_lock_space(def, sp, sp_obj) : NULL;
    if (space && (rc = status_slots(r, &ss, &n_ss)) != KC_OK) {
        store_obj_put(sp_obj);
        return ctl_error(rc, "out of memory");
    }
    for (size_t i = 0; i < n_ss && rc == KC_OK; i++) {
        char *name = NULL;
        if (def->slot_name(space, ss[i], &name, NULL) == KC_OK &&
            !list_add(&r->held, name, ss[i], sp))
            rc = KC_ERR_NOMEM;
        free(name);
    }
    strings_free(ss, n_ss);
    store_obj_put(sp_obj);
    if (rc != KC_OK)
        return ctl_error(rc, "out of memory");
    bool any = false;
    for (size_t i = 0; i < r->held.n; i++) {
        kc_error err = KC_ERROR_INIT;
        bool released = false;
        rc = claim_release(r, r->held.names[i], &released, &err);
        if (rc != KC_OK) {
            ctl_result res = rec_api_error("releasing a reservation", rc, &err);
            kc_error_clear(&err);
            return res;
        }
        any = any || released;
        inflight_forget_claim(r, r->held.pools[i]);
    }
    ctl_result res = remove_finalizer(r);
    if (res.outcome != CTL_DONE)
        return res;
    if (any) {
        const char *shown = def->status_display(cur_status(r));
        const char *from = sp ? sp : (r->held.n ? r->held.pools[0] : "");
        char *m = NULL;
        if (rec_msg(&m, "Released %s of %s %s", shown && *shown ? shown : "what it held",
                    def->pool_kind, from) == KC_OK)
            claim_event(r, REC_EVENT_NORMAL, "Released", m);
        free(m);
    }
    return ctl_done();
}

/*
 * Acquire slot of the pool for the claim. 0 acquired (noted in flight and,
 * when got is given, added to it), REC_TAKEN (holder filled), or a negative
 * kc_status (err filled).
 */
static int claim_acquire(claim_run *r, const char *slot, slot_list *got, rec_reservation *holder,
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
        if ((got && !list_add(got, name, canon, r->pool_name)) ||
            !list_add(&r->acquired, name, canon, r->pool_name))
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
    int rc = status_slots(r, &ss, &n_ss);
    if (rc != KC_OK)
        return rc;
    for (size_t j = 0; j < n_ss && *n_keep < (size_t)r->count; j++)
        for (size_t i = 0; i < h->n; i++)
            if (!keep[i] && !strcmp(h->slots[i], ss[j])) {
                keep[i] = true;
                (*n_keep)++;
                break;
            }
    strings_free(ss, n_ss);
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

typedef enum fill_outcome {
    FILL_DONE,   /* got all it needed */
    FILL_NONE,   /* the pool has no free slot for it: nothing of this round kept */
    FILL_RESULT, /* *res says what next (requeue, error); what was got stays */
} fill_outcome;

/*
 * Acquire need more slots of the pool into got, skipping those of have.
 * A slot another claim won (our cache lagged) is skipped and another tried,
 * REC_ATTEMPTS times in all.
 */
static fill_outcome claim_fill(claim_run *r, const slot_list *have, size_t need, slot_list *got,
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
        rc = claim_acquire(r, slot, got, &holder, &err);
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

static ctl_result claim_exhausted(claim_run *r)
{
    char *m = NULL;
    int rc = r->def->msgs.exhausted(r->pool_name, r->pool, &m);
    return claim_pending_msg(r, r->def->reason_exhausted, rc, m);
}

/*
 * After a round acquired got: if the claim now holds more than it wants (a
 * lagging cache hid some), give the round back and requeue; the next
 * reconcile keeps what every replica keeps. Else what it holds is settled.
 */
static ctl_result claim_settle(claim_run *r, const slot_list *got, bool *settled)
{
    *settled = false;
    int rc = load_held(r);
    if (rc != KC_OK)
        return ctl_error(rc, "listing the claim's reservations: %s", kc_strerror(rc));
    if (r->held.n <= (size_t)r->count) {
        *settled = true;
        return ctl_done();
    }
    ctl_result res = release_unshown(r, got, "releasing a second reservation");
    return res.outcome == CTL_DONE ? ctl_requeue() : res;
}

static ctl_result claim_holds(claim_run *r);

/* After a round: settle, and when settled go on from what is held. */
static ctl_result after_round(claim_run *r, const slot_list *got)
{
    bool settled = false;
    ctl_result res = claim_settle(r, got, &settled);
    if (!settled)
        return res;
    return claim_holds(r);
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
        fill_outcome fo = claim_fill(r, kept, 1, &got, &res);
        if (fo == FILL_DONE && got.n == 1) {
            char *m = NULL;
            if (rec_msg(&m, "Replaced %s %s of %s %s, which is unhealthy, with %s",
                        r->def->slot_noun, kept->slots[i], r->def->pool_kind, r->pool_name,
                        got.slots[0]) == KC_OK)
                claim_event(r, REC_EVENT_NORMAL, rec_nz(r->def->reason_replaced), m);
            free(m);
            if (!list_add(replaced, kept->names[i], kept->slots[i], kept->pools[i]) ||
                !list_set(kept, i, got.names[0], got.slots[0], got.pools[0]))
                res = ctl_error(KC_ERR_NOMEM, "out of memory");
        }
        list_clear(&got);
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
        if (!list_has_name(&r->held, cur)) {
            rc = claim_acquire(r, r->held.slots[i], NULL, &holder, &err);
            lost = rc == REC_TAKEN;
            if (lost)
                rc = KC_OK;
        }
        if (rc == KC_OK)
            rc = claim_release(r, r->held.names[i], NULL, &err);
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
                claim_event(r, REC_EVENT_WARNING, def->reason_lost, m);
            free(m);
        }
        rec_reservation_clear(&holder);
        kc_error_clear(&err);
        if (lost || list_has_name(&r->held, cur)) {
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
static ctl_result claim_holds(claim_run *r)
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
        oom = oom || !list_add(to, r->held.names[i], r->held.slots[i], r->held.pools[i]);
    }
    if (!oom) {
        slot_list saved = r->held;
        r->held = in_pool;
        size_t n_keep = 0;
        int rc = choose_kept(r, keep, &n_keep);
        for (size_t i = 0; i < r->held.n && rc == KC_OK; i++) {
            slot_list *to = keep[i] ? &kept : &extra;
            if (!list_add(to, r->held.names[i], r->held.slots[i], r->held.pools[i]))
                rc = KC_ERR_NOMEM;
        }
        r->held = saved;
        oom = rc != KC_OK;
    }
    list_clear(&in_pool);
    free(keep);
    if (oom) {
        res = ctl_error(KC_ERR_NOMEM, "out of memory");
        goto out;
    }
    res = release_unshown(r, &other, "releasing a reservation of another pool");
    if (res.outcome == CTL_DONE)
        res = release_unshown(r, &extra, "releasing a second reservation");
    if (res.outcome != CTL_DONE)
        goto out;
    for (size_t i = 0; i < extra.n; i++)
        rec_log(r->d, REC_LOG_INFO, r->logger, "released a second reservation of a claim",
                REC_KV("namespace", r->ref.namespace_, "name", r->ref.name, def->slot_noun,
                       extra.slots[i]));

    if (kept.n < (size_t)r->count && r->pool && !pool_is_deleting(r)) {
        /* Complete the claim (a round cut short by a crash, a slot lost). */
        slot_list got = {0};
        fill_outcome fo = claim_fill(r, &kept, (size_t)r->count - kept.n, &got, &res);
        if (fo == FILL_DONE) {
            res = after_round(r, &got);
            list_clear(&got);
            goto out;
        }
        if (fo == FILL_NONE) {
            res = release_unshown(r, &got, "giving back a partial allocation");
            /* Never Ready: all or nothing, so two waiting claims do not
             * starve each other holding half of what each needs. */
            char **ss = NULL;
            size_t n_ss = 0;
            if (res.outcome == CTL_DONE && status_slots(r, &ss, &n_ss) == KC_OK && n_ss == 0)
                res = release_unshown(r, &kept, "giving back a partial allocation");
            strings_free(ss, n_ss);
            if (res.outcome == CTL_DONE)
                res = claim_exhausted(r);
        }
        list_clear(&got);
        goto out;
    }
    if (kept.n < (size_t)r->count) {
        res = claim_exhausted(r);
        goto out;
    }
    res = claim_replace(r, &kept, &replaced);
    if (res.outcome != CTL_DONE)
        goto out;
    if (!kept_confirmed(r, &kept, &res))
        goto out;
    res = claim_ready(r, kept.slots, kept.n);
    /* The replaced go once a status without them is the latest. */
    if (res.outcome == CTL_DONE)
        res = release_unshown(r, &replaced, "releasing a replaced slot");
out:
    list_clear(&other);
    list_clear(&kept);
    list_clear(&extra);
    list_clear(&replaced);
    return res;
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
    slot_list got = {0};
    rc = claim_acquire(r, slot, &got, &holder, &err);
    ctl_result res;
    if (rc == KC_OK) {
        res = after_round(r, &got);
    } else if (rc == REC_TAKEN) {
        rc = def->msgs.in_use(r->wanted, r->pool_name, holder.claim_namespace, holder.claim_name,
                              holder.pool_name, &m);
        res = claim_pending_msg(r, def->reason_in_use, rc, m);
    } else if (rc == KC_ERR_CONFLICT) {
        res = ctl_requeue();
    } else {
        res = rec_api_error("reserving the slot asked for", rc, &err);
    }
    list_clear(&got);
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
    fill_outcome fo = claim_fill(r, &none, (size_t)r->count, &got, &res);
    if (fo == FILL_DONE) {
        res = after_round(r, &got);
    } else if (fo == FILL_NONE) {
        res = release_unshown(r, &got, "giving back a partial allocation");
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
            res = r->pool_chosen ? ctl_requeue() : claim_exhausted(r);
    }
    list_clear(&got);
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
        int rc = claim_acquire(r, slots[i], &got, &holder, &err);
        if (rc == REC_TAKEN) {
            char *m = NULL;
            if (rec_msg(&m,
                        "%s was released outside the operator and is now held by %s %s/%s; "
                        "taking another %s",
                        slots[i], r->def->claim_kind, rec_nz(holder.claim_namespace),
                        rec_nz(holder.claim_name), r->def->slot_noun) == KC_OK)
                claim_event(r, REC_EVENT_WARNING, r->def->reason_lost, m);
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
        *res = after_round(r, &got);
        handled = true;
    }
    list_clear(&got);
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
            res = claim_pending_msg(r, reason, KC_OK, m);
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
    const char *sp = status_pool(r);
    const char *pick = NULL;
    for (size_t i = 0; i < r->held.n && !pick; i++)
        if (sp && !strcmp(r->held.pools[i], sp))
            pick = sp;
    if (!pick && r->held.n > 0)
        pick = r->held.pools[0];
    if (!pick && sp && *sp) {
        char **ss = NULL;
        size_t n_ss = 0;
        if (status_slots(r, &ss, &n_ss) == KC_OK && n_ss > 0)
            pick = sp;
        strings_free(ss, n_ss);
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
            return claim_pending_msg(r, def->reason_invalid, KC_OK, problem);
        free(problem);
        r->count = def->want_count ? def->want_count(r->want) : 1;
    }
    rc = load_held(r);
    if (rc != KC_OK)
        return ctl_error(rc, "listing the claim's reservations: %s", kc_strerror(rc));
    res = resolve_pool(r, &ok);
    if (!ok)
        return res;
    rc = open_pool(r);
    if (rc != KC_OK)
        return ctl_error(rc, "out of memory");
    if (r->held.n > 0)
        return claim_holds(r);

    bool pool_deleting = pool_is_deleting(r);
    if (r->pool && !pool_deleting) {
        char **ss = NULL;
        size_t n_ss = 0;
        if ((rc = status_slots(r, &ss, &n_ss)) != KC_OK)
            return ctl_error(rc, "out of memory");
        bool handled = n_ss > 0 && claim_readopt(r, ss, n_ss, &res);
        strings_free(ss, n_ss);
        if (handled)
            return res;
    }

    if (!r->pool_cached) {
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
