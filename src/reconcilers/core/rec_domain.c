/*
 * rec_domain - setup, per-pool state and the informer handlers of a domain
 * (rec_domain.h). The reconciles are in rec_claim.c and rec_pool.c.
 *
 * Handlers are plain informer handlers (not ctl_watch_map) so they can tell a
 * spec change from a status write and skip the periodic resync:
 *   claims        add/delete keep the pool's requested set (slots asked for by
 *                 name); a delete sends the claim's Reservations to the sweep;
 *   pools         add, delete, a new generation, deletionTimestamp or uid
 *                 enqueue the pool's claims (a status-only write enqueues none);
 *   Reservations  add/delete keep the pool's used set and enqueue the pool
 *                 (counts); an add this process did not make, or one that
 *                 makes its claim hold two, enqueues the claim; a delete
 *                 enqueues its claim and the pool's waiting claims.
 * Reconciles wait (requeue after REC_SYNC_RETRY) until the handlers have seen
 * the initial lists, so nothing is allocated from a half-built used set.
 */
#include "rec_domain.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pv_clock.h"
#include "rec_domain_internal.h"
#include "rec_reserve.h"
#include "rec_util.h"

/* ---- small helpers ---------------------------------------------------------- */

void rec_log(rec_domain *d, rec_log_level level, const char *logger, const char *message,
             const char *const *kv)
{
    if (d->env.log)
        d->env.log(&d->env, level, logger, message, kv);
}

const char *rec_nz(const char *s)
{
    return s ? s : "";
}

ctl_result rec_api_error(const char *what, int rc, const kc_error *err)
{
    return ctl_error(rc, "%s: %s", what, err->message ? err->message : kc_strerror(rc));
}

bool rec_caches_ready(rec_domain *d)
{
    if (!d->claims)
        return true; /* detached: the test filled the stores */
    return inf_handler_has_synced(d->h_resv) && inf_handler_has_synced(d->h_pools) &&
           inf_handler_has_synced(d->h_claims);
}

/* ---- per-pool state (d->mu held) ----------------------------------------------- */

static void inflight_drop_at(rec_pool_state *ps, size_t i)
{
    free(ps->inflight[i].slot);
    free(ps->inflight[i].name);
    free(ps->inflight[i].claim_uid);
    ps->inflight[i] = ps->inflight[--ps->n_inflight];
}

static void open_pool_unref(const rec_domain_def *def, rec_open_pool *op)
{
    if (!op || --op->refs > 0)
        return;
    if (op->pool)
        def->pool_close(op->pool);
    free(op->problem);
    free(op->rv);
    free(op);
}

static void pool_state_free(const rec_domain_def *def, rec_pool_state *ps)
{
    if (!ps)
        return;
    open_pool_unref(def, ps->open);
    while (ps->n_inflight > 0)
        inflight_drop_at(ps, ps->n_inflight - 1);
    free(ps->inflight);
    free(ps->counts_rv);
    free(ps->group);
    def->set_free(ps->used);
    def->set_free(ps->requested);
    free(ps);
}

rec_pool_state *rec_pool_state_get(rec_domain *d, const char *name, bool create)
{
    rec_pool_state *ps = inf_map_get(&d->pool_states, name);
    if (ps || !create)
        return ps;
    size_t len = strlen(name);
    ps = calloc(1, sizeof *ps + len + 1);
    if (!ps)
        return NULL;
    memcpy(ps->name, name, len + 1);
    if (d->def->set_new(&ps->used) != KC_OK || d->def->set_new(&ps->requested) != KC_OK ||
        inf_map_put(&d->pool_states, ps->name, ps) != 0) {
        pool_state_free(d->def, ps);
        return NULL;
    }
    return ps;
}

rec_scope_state *rec_scope_state_get(rec_domain *d, const char *scope, bool create)
{
    rec_scope_state *ss = inf_map_get(&d->scope_states, scope);
    if (ss || !create)
        return ss;
    size_t len = strlen(scope);
    ss = calloc(1, sizeof *ss + len + 1);
    if (!ss)
        return NULL;
    memcpy(ss->name, scope, len + 1);
    if (d->def->set_new(&ss->used) != KC_OK || inf_map_put(&d->scope_states, ss->name, ss) != 0) {
        if (ss->used)
            d->def->set_free(ss->used);
        free(ss);
        return NULL;
    }
    return ss;
}

/* ---- scopes ---------------------------------------------------------------------- */

bool rec_scoped(const rec_domain_def *def)
{
    return def->pool_scope_path != NULL;
}

const char *rec_pool_scope(const rec_domain_def *def, json_object *pool_obj)
{
    if (!rec_scoped(def))
        return rec_obj_str(pool_obj, "metadata.name");
    const char *v = rec_obj_str(pool_obj, def->pool_scope_path);
    return v && *v ? v : def->pool_scope_default;
}

const char *rec_resv_scope(const rec_domain_def *def, json_object *resv)
{
    if (!rec_scoped(def))
        return NULL;
    const char *s =
        def->resv_scope_key ? rec_obj_str(rec_obj_at(resv, "spec"), def->resv_scope_key) : NULL;
    return s && *s ? s : def->pool_scope_default;
}

const char *rec_lock_space(const rec_domain_def *def, const char *pool_name, json_object *pool_obj)
{
    if (!rec_scoped(def))
        return pool_name;
    return pool_obj ? rec_pool_scope(def, pool_obj) : NULL;
}

int rec_pool_open(rec_domain *d, json_object *pool_obj, rec_open_pool **out)
{
    *out = NULL;
    const char *name = rec_obj_str(pool_obj, "metadata.name");
    const char *rv = rec_obj_str(pool_obj, "metadata.resourceVersion");
    if (name && rv) {
        pthread_mutex_lock(&d->mu);
        rec_pool_state *ps = rec_pool_state_get(d, name, false);
        if (ps && ps->open && !strcmp(ps->open->rv, rv)) {
            ps->open->refs++;
            *out = ps->open;
        }
        pthread_mutex_unlock(&d->mu);
        if (*out)
            return KC_OK;
    }
    rec_open_pool *op = calloc(1, sizeof *op);
    if (!op || !(op->rv = strdup(rv ? rv : "")) ||
        d->def->pool_open(pool_obj, &op->pool, &op->problem) != KC_OK) {
        if (op)
            free(op->rv);
        free(op);
        return KC_ERR_NOMEM;
    }
    op->refs = 1;
    op->deleting = rec_obj_is_deleting(pool_obj);
    if (name && rv) {
        pthread_mutex_lock(&d->mu);
        rec_pool_state *ps = rec_pool_state_get(d, name, true);
        if (ps) {
            open_pool_unref(d->def, ps->open);
            ps->open = op;
            op->refs++;
        }
        pthread_mutex_unlock(&d->mu);
    }
    *out = op;
    return KC_OK;
}

int rec_pool_open_cached(rec_domain *d, const char *name, rec_open_pool **out)
{
    *out = NULL;
    char *rv = NULL;
    int rc = store_rv(d->pools_store, name, &rv);
    if (rc != KC_OK)
        return rc;
    pthread_mutex_lock(&d->mu);
    rec_pool_state *ps = rec_pool_state_get(d, name, false);
    if (ps && ps->open && *rv && !strcmp(ps->open->rv, rv)) {
        ps->open->refs++;
        *out = ps->open;
    }
    pthread_mutex_unlock(&d->mu);
    free(rv);
    if (*out)
        return KC_OK;
    json_object *obj = NULL;
    if ((rc = store_get(d->pools_store, name, &obj)) != KC_OK)
        return rc;
    rc = rec_pool_open(d, obj, out);
    store_obj_put(obj);
    return rc;
}

void rec_pool_put(rec_domain *d, rec_open_pool *op)
{
    if (!op)
        return;
    pthread_mutex_lock(&d->mu);
    open_pool_unref(d->def, op);
    pthread_mutex_unlock(&d->mu);
}

void rec_inflight_prune(rec_pool_state *ps, double now)
{
    for (size_t i = 0; i < ps->n_inflight;) {
        if (now - ps->inflight[i].at > REC_INFLIGHT_TTL)
            inflight_drop_at(ps, i);
        else
            i++;
    }
}

bool rec_inflight_remove_slot(rec_pool_state *ps, const char *slot, const char *claim_uid)
{
    bool mine = false;
    for (size_t i = 0; i < ps->n_inflight;) {
        if (!strcmp(ps->inflight[i].slot, slot)) {
            mine = mine || (claim_uid && !strcmp(ps->inflight[i].claim_uid, claim_uid));
            inflight_drop_at(ps, i);
        } else {
            i++;
        }
    }
    return mine;
}

void rec_inflight_remove_uid(rec_pool_state *ps, const char *claim_uid)
{
    for (size_t i = 0; i < ps->n_inflight;) {
        if (!strcmp(ps->inflight[i].claim_uid, claim_uid))
            inflight_drop_at(ps, i);
        else
            i++;
    }
}

bool rec_inflight_add(rec_pool_state *ps, const char *slot, const char *name, const char *claim_uid)
{
    if (ps->n_inflight == ps->cap_inflight) {
        size_t cap = ps->cap_inflight ? 2 * ps->cap_inflight : 8;
        rec_inflight *v = realloc(ps->inflight, cap * sizeof *v);
        if (!v)
            return false;
        ps->inflight = v;
        ps->cap_inflight = cap;
    }
    rec_inflight *e = &ps->inflight[ps->n_inflight];
    e->slot = strdup(slot);
    e->name = strdup(name);
    e->claim_uid = strdup(claim_uid);
    e->at = pv_clock_monotonic();
    if (!e->slot || !e->name || !e->claim_uid) {
        free(e->slot);
        free(e->name);
        free(e->claim_uid);
        return false;
    }
    ps->n_inflight++;
    return true;
}

int rec_inflight_each_of_claim(rec_domain *d, const char *claim_uid,
                               int (*fn)(const char *pool, const rec_inflight *e, void *arg),
                               void *arg)
{
    double now = pv_clock_monotonic();
    size_t pos = 0;
    const char *key;
    void *value;
    int rc = KC_OK;
    while (rc == KC_OK && inf_map_next(&d->pool_states, &pos, &key, &value)) {
        rec_pool_state *ps = value;
        rec_inflight_prune(ps, now);
        for (size_t i = 0; i < ps->n_inflight && rc == KC_OK; i++)
            if (!strcmp(ps->inflight[i].claim_uid, claim_uid))
                rc = fn(ps->name, &ps->inflight[i], arg);
    }
    return rc;
}

/* ---- enqueueing ----------------------------------------------------------------- */

/* Enqueue "namespace/name" or "name" to c (NULL: detached, nothing to do). */
static void enqueue_key(ctl *c, const char *key)
{
    if (!c)
        return;
    const char *slash = strchr(key, '/');
    if (!slash) {
        (void)ctl_enqueue(c, NULL, key);
        return;
    }
    char *ns = strndup(key, (size_t)(slash - key));
    if (ns)
        (void)ctl_enqueue(c, ns, slash + 1);
    free(ns);
}

/* Enqueue to c every key of s that index emits value for. */
static void enqueue_index(ctl *c, store *s, const char *index_name, const char *value)
{
    char **keys = NULL;
    size_t n = 0;
    if (!c || !value || store_index_keys(s, index_name, value, &keys, &n) != KC_OK)
        return;
    for (size_t i = 0; i < n; i++)
        enqueue_key(c, keys[i]);
    store_keys_free(keys, n);
}

static size_t index_count(store *s, const char *index_name, const char *value)
{
    char **keys = NULL;
    size_t n = 0;
    if (!value || store_index_keys(s, index_name, value, &keys, &n) != KC_OK)
        return 0;
    store_keys_free(keys, n);
    return n;
}

static void enqueue(ctl *c, const char *namespace_, const char *name)
{
    if (c && name)
        (void)ctl_enqueue(c, namespace_, name);
}

/* ---- indexes ------------------------------------------------------------------- */

/* The path of the value claims are grouped by (their pool, or what pools
 * share with them: a resource name). */
static const char *claim_group_path(const rec_domain_def *def)
{
    return def->claim_group_path ? def->claim_group_path : def->claim_pool_path;
}

/* Claims that are not Ready, by group: the ones a freed slot may help. */
static int index_waiting(json_object *obj, store_values *out, void *user)
{
    const rec_domain_def *def = user;
    const char *pool = rec_obj_str(obj, claim_group_path(def));
    if (!pool || rec_condition_is_true(rec_obj_at(obj, "status"), REC_COND_READY))
        return KC_OK;
    return store_values_add(out, pool);
}

/* "<pool>|<slot>" of claims that ask for a slot by name. */
static int index_requested(json_object *obj, store_values *out, void *user)
{
    const rec_domain_def *def = user;
    const char *pool = rec_obj_str(obj, def->claim_pool_path);
    const char *slot = rec_obj_str(obj, def->claim_slot_path);
    if (!pool || !slot || !*slot)
        return KC_OK;
    char *v = NULL;
    if (rec_msg(&v, "%s|%s", pool, slot) != KC_OK)
        return KC_ERR_NOMEM;
    int rc = store_values_add(out, v);
    free(v);
    return rc;
}

/* Pools by scope (scoped domains). */
static int index_scope(json_object *obj, store_values *out, void *user)
{
    const char *scope = rec_pool_scope(user, obj);
    return scope ? store_values_add(out, scope) : KC_OK;
}

/* The current name of slot's Reservation in scope (new, or NULL). */
static char *current_name(const rec_domain_def *def, const char *scope, const char *slot)
{
    char *name = NULL;
    if (def->slot_name(scope, slot, &name, NULL) != KC_OK) {
        free(name);
        return NULL;
    }
    return name;
}

/* Reservations under an earlier name, by the slot they hold in their scope
 * and in their pool (REC_IDX_LEGACY). */
static int index_legacy(json_object *obj, store_values *out, void *user)
{
    const rec_domain_def *def = user;
    const char *scope = rec_resv_scope(def, obj);
    const char *pool = rec_obj_str(obj, "spec.pool.name");
    const char *slot = rec_obj_str(obj, "spec.slot");
    if (!scope || !pool || !slot)
        return KC_OK;
    char *cur = current_name(def, scope, slot);
    bool current = cur && !strcmp(cur, rec_nz(rec_obj_str(obj, "metadata.name")));
    free(cur);
    if (current)
        return KC_OK;
    char *v = NULL;
    int rc = rec_msg(&v, "s|%s|%s", scope, slot);
    if (rc == KC_OK)
        rc = store_values_add(out, v);
    free(v);
    v = NULL;
    if (rc == KC_OK && (rc = rec_msg(&v, "p|%s|%s", pool, slot)) == KC_OK)
        rc = store_values_add(out, v);
    free(v);
    return rc;
}

/*
 * Whether a cached Reservation holds slot in scope (pool NULL) or through
 * pool (of scope): the one under the slot's current name, or any under an
 * earlier name.
 */
static bool slot_held(rec_domain *d, const char *scope, const char *pool, const char *slot)
{
    char *v = NULL;
    if (rec_msg(&v, "%c|%s|%s", pool ? 'p' : 's', pool ? pool : scope, slot) != KC_OK)
        return false;
    bool held = index_count(d->resv_store, REC_IDX_LEGACY, v) > 0;
    free(v);
    char *cur = held ? NULL : current_name(d->def, scope, slot);
    json_object *o = NULL;
    if (cur && store_get(d->resv_store, cur, &o) == KC_OK && o)
        held = !pool || !strcmp(rec_nz(rec_obj_str(o, "spec.pool.name")), pool);
    if (o)
        store_obj_put(o);
    free(cur);
    return held;
}

static int add_indexes(rec_domain *d, store *claims, store *pools, store *resv)
{
    const rec_domain_def *def = d->def;
    int rc;
    /* Index functions get their path (or the def) as user data: both static. */
    if ((rc = store_add_index(claims, REC_IDX_BY_POOL, store_index_field,
                              (void *)claim_group_path(def))) != KC_OK ||
        (rc = store_add_index(claims, REC_IDX_WAITING, index_waiting, (void *)def)) != KC_OK ||
        (rc = store_add_index(resv, REC_IDX_BY_POOL, store_index_field,
                              (void *)"spec.pool.name")) != KC_OK ||
        (rc = store_add_index(resv, REC_IDX_CLAIM_UID, store_index_field,
                              (void *)"spec.claim.uid")) != KC_OK)
        return rc;
    if (def->claim_slot_path &&
        (rc = store_add_index(claims, REC_IDX_REQUESTED, index_requested, (void *)def)) != KC_OK)
        return rc;
    if (def->pool_group_path && (rc = store_add_index(pools, REC_IDX_GROUP, store_index_field,
                                                      (void *)def->pool_group_path)) != KC_OK)
        return rc;
    if (rec_scoped(def) &&
        ((rc = store_add_index(pools, REC_IDX_SCOPE, index_scope, (void *)def)) != KC_OK ||
         (rc = store_add_index(resv, REC_IDX_LEGACY, index_legacy, (void *)def)) != KC_OK))
        return rc;
    return KC_OK;
}

/* ---- handlers (informer dispatch threads) ---------------------------------------- */

/*
 * Keep the pool's requested set: dynamic allocation leaves the slots claims
 * ask for by name to them, so a claim of a fixed slot applied together with
 * others does not lose it to one of them.
 */
static void claim_requested(rec_domain *d, json_object *obj, bool added)
{
    const rec_domain_def *def = d->def;
    if (!def->claim_slot_path)
        return;
    const char *pool = rec_obj_str(obj, def->claim_pool_path);
    const char *slot = rec_obj_str(obj, def->claim_slot_path);
    if (!pool || !slot || !*slot)
        return;
    if (!added) {
        /* Another claim may ask for the same slot: keep it for that one. */
        char *v = NULL;
        if (rec_msg(&v, "%s|%s", pool, slot) != KC_OK)
            return;
        size_t still = index_count(d->claims_store, REC_IDX_REQUESTED, v);
        free(v);
        if (still > 0)
            return;
    }
    int rc = KC_OK;
    pthread_mutex_lock(&d->mu);
    rec_pool_state *ps = rec_pool_state_get(d, pool, added);
    if (ps)
        rc = def->set_update(ps->requested, slot, NULL, added);
    else if (added)
        rc = KC_ERR_NOMEM;
    pthread_mutex_unlock(&d->mu);
    if (rc == KC_ERR_NOMEM)
        rec_log(d, REC_LOG_ERROR, def->claim_controller, "out of memory recording a requested slot",
                REC_KV("pool", pool, def->slot_noun, slot));
}

static void claims_on_add(json_object *obj, void *user)
{
    claim_requested(user, obj, true);
}

static void claims_on_delete(json_object *obj, void *user)
{
    rec_domain *d = user;
    claim_requested(d, obj, false);
    const char *uid = rec_obj_str(obj, "metadata.uid");
    /* Its Reservations (if any are left) are checked for orphans at once. */
    enqueue_index(d->c_resv, d->resv_store, REC_IDX_CLAIM_UID, uid);
    rec_stale_forget(d->stale, uid);
}

/* The group value of a pool (its name, or def->pool_group_path). */
static const char *pool_group(const rec_domain_def *def, json_object *pool_obj)
{
    return rec_obj_str(pool_obj, def->pool_group_path ? def->pool_group_path : "metadata.name");
}

/* Remember the group of a pool the cache shows (pool_group_of reads it
 * without parsing the object). */
static void note_pool_group(rec_domain *d, json_object *pool_obj)
{
    const char *name = rec_obj_str(pool_obj, "metadata.name");
    const char *g = d->def->pool_group_path ? pool_group(d->def, pool_obj) : NULL;
    if (!name || !g)
        return;
    pthread_mutex_lock(&d->mu);
    rec_pool_state *ps = rec_pool_state_get(d, name, true);
    if (ps && (!ps->group || strcmp(ps->group, g))) {
        char *copy = strdup(g);
        if (copy) {
            free(ps->group);
            ps->group = copy;
        }
    }
    pthread_mutex_unlock(&d->mu);
}

/* The group of the pool called name (malloc'd), or NULL. */
static char *pool_group_of(rec_domain *d, const char *name)
{
    if (!d->def->pool_group_path)
        return strdup(name);
    char *known = NULL;
    pthread_mutex_lock(&d->mu);
    rec_pool_state *ps = rec_pool_state_get(d, name, false);
    if (ps && ps->group)
        known = strdup(ps->group);
    pthread_mutex_unlock(&d->mu);
    if (known)
        return known;
    json_object *obj = NULL;
    if (store_get(d->pools_store, name, &obj) != KC_OK)
        return NULL;
    const char *g = pool_group(d->def, obj);
    char *copy = g ? strdup(g) : NULL;
    store_obj_put(obj);
    return copy;
}

static void enqueue_claim_of(rec_domain *d, json_object *resv);

/* Wake the claims a change of the pool may concern: those of its name when
 * claims name their pool; else the waiting ones of its group and those
 * holding slots of it. */
static void wake_claims(rec_domain *d, json_object *pool_obj)
{
    const char *name = rec_obj_str(pool_obj, "metadata.name");
    if (d->def->claim_pool_path) {
        enqueue_index(d->c_claim, d->claims_store, REC_IDX_BY_POOL, name);
        return;
    }
    enqueue_index(d->c_claim, d->claims_store, REC_IDX_WAITING, pool_group(d->def, pool_obj));
    json_object **objs = NULL;
    size_t n = 0;
    if (!d->c_claim || !name ||
        store_by_index(d->resv_store, REC_IDX_BY_POOL, name, &objs, &n) != KC_OK)
        return;
    for (size_t i = 0; i < n; i++)
        enqueue_claim_of(d, objs[i]);
    store_objs_free(objs, n);
}

/* Scoped domains: a pool came, went or changed its spec: the other pools of
 * its scope recount (what overlaps them) and their waiting claims try again. */
static void wake_scope_peers(rec_domain *d, json_object *pool_obj)
{
    if (!rec_scoped(d->def))
        return;
    const char *self = rec_obj_str(pool_obj, "metadata.name");
    char **keys = NULL;
    size_t n = 0;
    if (!d->c_pool || store_index_keys(d->pools_store, REC_IDX_SCOPE,
                                       rec_pool_scope(d->def, pool_obj), &keys, &n) != KC_OK)
        return;
    for (size_t i = 0; i < n; i++)
        if (!self || strcmp(keys[i], self) != 0)
            enqueue(d->c_pool, NULL, keys[i]);
    store_keys_free(keys, n);
}

static void pools_on_add(json_object *obj, void *user)
{
    note_pool_group(user, obj);
    wake_claims(user, obj);
    wake_scope_peers(user, obj);
}

static void pools_on_update(json_object *old_obj, json_object *new_obj, void *user)
{
    rec_domain *d = user;
    if (old_obj == new_obj)
        return;
    note_pool_group(d, new_obj);
    const char *ou = rec_obj_str(old_obj, "metadata.uid"),
               *nu = rec_obj_str(new_obj, "metadata.uid");
    bool changed = rec_obj_generation(old_obj) != rec_obj_generation(new_obj) ||
                   rec_obj_is_deleting(old_obj) != rec_obj_is_deleting(new_obj) ||
                   strcmp(rec_nz(ou), rec_nz(nu)) != 0 ||
                   (d->def->pool_changed && d->def->pool_changed(old_obj, new_obj));
    if (changed) {
        wake_claims(d, new_obj);
        wake_scope_peers(d, new_obj);
    }
}

static void pools_on_delete(json_object *obj, void *user)
{
    pools_on_add(obj, user);
}

static void enqueue_claim_of(rec_domain *d, json_object *resv)
{
    enqueue(d->c_claim, rec_obj_str(resv, "spec.claim.namespace"),
            rec_obj_str(resv, "spec.claim.name"));
}

/* The pool and slot of a Reservation of this domain, or false. */
static bool resv_slot(rec_domain *d, json_object *obj, const char **pool, const char **slot)
{
    const char *kind = rec_obj_str(obj, "spec.pool.kind");
    *pool = rec_obj_str(obj, "spec.pool.name");
    *slot = rec_obj_str(obj, "spec.slot");
    return kind && !strcmp(kind, d->def->pool_kind) && *pool && *slot;
}

/* Scoped domains: a slot of the Reservation's scope came or went: the other
 * pools of the scope recount, and (freed) their waiting claims try again.
 * Pools claims name (claim_pool_path) wait by their own name. */
static void enqueue_scope(rec_domain *d, json_object *resv, const char *pool, bool freed)
{
    const char *scope = rec_resv_scope(d->def, resv);
    char **keys = NULL;
    size_t n = 0;
    if (!scope || !d->c_pool ||
        store_index_keys(d->pools_store, REC_IDX_SCOPE, scope, &keys, &n) != KC_OK)
        return;
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(keys[i], pool))
            continue;
        enqueue(d->c_pool, NULL, keys[i]);
        if (freed && d->def->claim_pool_path)
            enqueue_index(d->c_claim, d->claims_store, REC_IDX_WAITING, keys[i]);
    }
    store_keys_free(keys, n);
}

static void resv_on_add(json_object *obj, void *user)
{
    rec_domain *d = user;
    const char *pool, *slot;
    if (!resv_slot(d, obj, &pool, &slot))
        return;
    const char *claim_uid = rec_obj_str(obj, "spec.claim.uid");
    bool expected = false;
    int rc = KC_OK;
    pthread_mutex_lock(&d->mu);
    rec_pool_state *ps = rec_pool_state_get(d, pool, true);
    if (ps) {
        char *holder = NULL;
        rc = rec_msg(&holder, "%s/%s", rec_nz(rec_obj_str(obj, "spec.claim.namespace")),
                     rec_nz(rec_obj_str(obj, "spec.claim.name")));
        if (rc == KC_OK)
            rc = d->def->set_update(ps->used, slot, holder, true);
        const char *scope = rec_resv_scope(d->def, obj);
        if (rc == KC_OK && scope) {
            rec_scope_state *ss = rec_scope_state_get(d, scope, true);
            rc = ss ? d->def->set_update(ss->used, slot, holder, true) : KC_ERR_NOMEM;
        }
        free(holder);
        expected = rec_inflight_remove_slot(ps, slot, claim_uid);
    } else {
        rc = KC_ERR_NOMEM;
    }
    pthread_mutex_unlock(&d->mu);
    if (rc == KC_ERR_NOMEM)
        rec_log(d, REC_LOG_ERROR, d->def->claim_controller, "out of memory recording a reservation",
                REC_KV("pool", pool));
    enqueue(d->c_pool, NULL, pool);
    enqueue_scope(d, obj, pool, false);
    /* Ours, just made: the reconcile that made it writes the status. Anything
     * else (another replica's, a second one of one claim) wakes the claim. */
    if (!expected || index_count(d->resv_store, REC_IDX_CLAIM_UID, claim_uid) > 1)
        enqueue_claim_of(d, obj);
}

/* A Reservation replaced under the same name while the watch was down (a
 * relist shows it as an update): the slot stays used, but both claims care. */
static void resv_on_update(json_object *old_obj, json_object *new_obj, void *user)
{
    rec_domain *d = user;
    if (old_obj == new_obj)
        return;
    if (strcmp(rec_nz(rec_obj_str(old_obj, "spec.claim.uid")),
               rec_nz(rec_obj_str(new_obj, "spec.claim.uid"))) == 0)
        return;
    enqueue_claim_of(d, old_obj);
    enqueue_claim_of(d, new_obj);
}

static void resv_on_delete(json_object *obj, void *user)
{
    rec_domain *d = user;
    const char *pool, *slot;
    if (!resv_slot(d, obj, &pool, &slot))
        return;
    int rc = KC_OK;
    /* A scoped domain's slot may still be held under another name (the
     * claim's Reservation renamed: the new one came before the old went). The
     * store no longer has obj: what its index counts is the rest. */
    const char *scope = rec_resv_scope(d->def, obj);
    bool pool_still = scope && slot_held(d, scope, pool, slot);
    bool scope_still = scope && slot_held(d, scope, NULL, slot);
    pthread_mutex_lock(&d->mu);
    rec_pool_state *ps = rec_pool_state_get(d, pool, false);
    if (ps && !pool_still)
        rc = d->def->set_update(ps->used, slot, NULL, false);
    rec_scope_state *ss = scope ? rec_scope_state_get(d, scope, false) : NULL;
    if (ss && !scope_still && rc == KC_OK)
        rc = d->def->set_update(ss->used, slot, NULL, false);
    pthread_mutex_unlock(&d->mu);
    if (rc == KC_ERR_NOMEM)
        rec_log(d, REC_LOG_ERROR, d->def->claim_controller, "out of memory freeing a reservation",
                REC_KV("pool", pool));
    enqueue(d->c_pool, NULL, pool);
    enqueue_claim_of(d, obj);
    char *group = pool_group_of(d, pool);
    enqueue_index(d->c_claim, d->claims_store, REC_IDX_WAITING, group);
    free(group);
    enqueue_scope(d, obj, pool, true);
}

/* ---- life cycle ------------------------------------------------------------------- */

/*
 * Sender thread of d->events (or a worker, for a full queue). expected: the
 * Event's namespace is being deleted or is gone, as when a claim goes with its
 * namespace: its last Event has nowhere to go, which is no error.
 */
static void events_log(int code, bool expected, const char *message, void *user)
{
    rec_domain *d = user;
    rec_log(d, expected ? REC_LOG_DEBUG : REC_LOG_ERROR, d->def->claim_controller,
            "unable to write an Event",
            REC_KV("error", rec_events_strerror(code), "detail", rec_nz(message)));
}

static int domain_new(const rec_domain_def *def, kc_client *c, const char *identity, int senders,
                      rec_domain **out)
{
    if (def->pools_compact && rec_scoped(def))
        return KC_ERR_INVALID_ARG; /* scopes read pool objects (rec_pool_scope) */
    rec_domain *d = calloc(1, sizeof *d);
    if (!d)
        return KC_ERR_NOMEM;
    d->def = def;
    d->client = c;
    pthread_mutex_init(&d->mu, NULL);
    inf_map_init(&d->pool_states);
    inf_map_init(&d->scope_states);
    *out = d;
    int rc = rec_stale_new(&d->stale);
    if (rc != KC_OK)
        return rc;
    rec_events_opts eo = {
        .reporting_instance = identity,
        .senders = senders,
        .log = events_log,
        .log_user = d,
    };
    return rec_events_new(c, &eo, &d->events);
}

void rec_domain_free(rec_domain *d)
{
    if (!d)
        return;
    if (d->h_claims)
        inf_remove_handler(d->claims, d->h_claims);
    if (d->h_pools)
        inf_remove_handler(d->pools, d->h_pools);
    if (d->h_resv)
        inf_remove_handler(d->resv, d->h_resv);
    rec_events_free(d->events);
    rec_stale_free(d->stale);
    size_t pos = 0;
    void *v;
    while (inf_map_next(&d->pool_states, &pos, NULL, &v))
        pool_state_free(d->def, v);
    inf_map_close(&d->pool_states);
    pos = 0;
    while (inf_map_next(&d->scope_states, &pos, NULL, &v)) {
        rec_scope_state *ss = v;
        d->def->set_free(ss->used);
        free(ss);
    }
    inf_map_close(&d->scope_states);
    pthread_mutex_destroy(&d->mu);
    if (d->own_stores) {
        store_free(d->claims_store);
        store_free(d->pools_store);
        store_free(d->resv_store);
    }
    free(d->watch_namespace);
    free(d);
}

static void domain_cleanup(void *arg)
{
    rec_domain_free(arg);
}

static int setup_informers(rec_domain *d, const rec_env *env)
{
    const rec_domain_def *def = d->def;
    kc_ref cref = def->claims_ref;
    cref.namespace_ = d->watch_namespace;
    inf_opts copts = {.store_mode = INF_STORE_COMPACT};
    inf_opts popts = {.store_mode = def->pools_compact ? INF_STORE_COMPACT : INF_STORE_SHARED};
    inf_opts ropts = {
        .label_selector = def->resv_selector,
        .store_mode = INF_STORE_COMPACT,
        .resync_period = REC_RESV_RESYNC,
    };
    int rc;
    if ((rc = inf_factory_get(env->factory, &cref, &copts, &d->claims)) != KC_OK ||
        (rc = inf_factory_get(env->factory, &def->pools_ref, &popts, &d->pools)) != KC_OK ||
        (rc = inf_factory_get(env->factory, &rec_reservations_ref, &ropts, &d->resv)) != KC_OK)
        return rc;
    d->claims_store = inf_store(d->claims);
    d->pools_store = inf_store(d->pools);
    d->resv_store = inf_store(d->resv);
    return add_indexes(d, d->claims_store, d->pools_store, d->resv_store);
}

static int setup_controllers(rec_domain *d, const rec_env *env)
{
    const rec_domain_def *def = d->def;
    int rc;
    if ((rc = rec_env_new_controller(env, def->claim_controller, rec_claim_reconcile, d,
                                     &d->c_claim)) != KC_OK ||
        (rc = ctl_watch_for(d->c_claim, d->claims)) != KC_OK)
        return rc;
    if ((rc = rec_env_new_controller(env, def->pool_controller, rec_pool_reconcile, d,
                                     &d->c_pool)) != KC_OK ||
        (rc = ctl_watch_for(d->c_pool, d->pools)) != KC_OK)
        return rc;
    if ((rc = rec_env_new_controller(env, def->resv_controller, rec_sweep_reconcile, d,
                                     &d->c_resv)) != KC_OK ||
        (rc = ctl_watch_for(d->c_resv, d->resv)) != KC_OK)
        return rc;

    /* Handlers last: they enqueue to the controllers above. */
    inf_handler_fns hc = {
        .on_add = claims_on_add, .on_delete = claims_on_delete, .user = d, .no_resync = true};
    inf_handler_fns hp = {.on_add = pools_on_add,
                          .on_update = pools_on_update,
                          .on_delete = pools_on_delete,
                          .user = d,
                          .no_resync = true};
    inf_handler_fns hr = {.on_add = resv_on_add,
                          .on_update = resv_on_update,
                          .on_delete = resv_on_delete,
                          .user = d,
                          .no_resync = true};
    if ((rc = inf_add_handler(d->claims, &hc, &d->h_claims)) != KC_OK ||
        (rc = inf_add_handler(d->pools, &hp, &d->h_pools)) != KC_OK ||
        (rc = inf_add_handler(d->resv, &hr, &d->h_resv)) != KC_OK)
        return rc;
    return KC_OK;
}

int rec_domain_setup(const rec_env *env, const rec_domain_def *def)
{
    return rec_domain_setup_user(env, def, NULL);
}

int rec_domain_setup_user(const rec_env *env, const rec_domain_def *def, void *user)
{
    if (!env || !env->client || !env->factory || !env->add_cleanup || !def)
        return KC_ERR_INVALID_ARG;
    rec_domain *d = NULL;
    int rc = domain_new(def, env->client, env->identity, REC_EVENT_SENDERS, &d);
    if (rc == KC_OK) {
        d->env = *env;
        d->user = user;
        if (env->watch_namespace && *env->watch_namespace &&
            !(d->watch_namespace = strdup(env->watch_namespace)))
            rc = KC_ERR_NOMEM;
    }
    if (rc != KC_OK) {
        rec_domain_free(d);
        return rc;
    }
    /* From here on the manager frees d, after the controllers and informers. */
    if ((rc = env->add_cleanup(env, domain_cleanup, d)) != KC_OK) {
        rec_domain_free(d);
        return rc;
    }
    if ((rc = setup_informers(d, env)) != KC_OK)
        return rc;
    return setup_controllers(d, env);
}

/* ---- detached (tests) ------------------------------------------------------------- */

int rec_domain_new_detached(const rec_domain_def *def, kc_client *c, rec_domain **out)
{
    if (!def || !c || !out)
        return KC_ERR_INVALID_ARG;
    rec_domain *d = NULL;
    int rc = domain_new(def, c, "test", 1, &d);
    if (rc == KC_OK) {
        d->own_stores = true;
        store_opts compact = {.mode = STORE_COMPACT};
        store_opts pools = {.mode = def->pools_compact ? STORE_COMPACT : STORE_SHARED};
        if ((rc = store_new(&compact, &d->claims_store)) == KC_OK &&
            (rc = store_new(&pools, &d->pools_store)) == KC_OK &&
            (rc = store_new(&compact, &d->resv_store)) == KC_OK)
            rc = add_indexes(d, d->claims_store, d->pools_store, d->resv_store);
    }
    if (rc != KC_OK) {
        rec_domain_free(d);
        return rc;
    }
    *out = d;
    return KC_OK;
}

void rec_domain_stores(rec_domain *d, store **claims, store **pools, store **resv)
{
    if (claims)
        *claims = d->claims_store;
    if (pools)
        *pools = d->pools_store;
    if (resv)
        *resv = d->resv_store;
}

void rec_domain_feed(rec_domain *d, rec_feed what, json_object *obj)
{
    switch (what) {
    case REC_FEED_CLAIM_ADD:
        claims_on_add(obj, d);
        break;
    case REC_FEED_CLAIM_DELETE:
        claims_on_delete(obj, d);
        break;
    case REC_FEED_RESV_ADD:
        resv_on_add(obj, d);
        break;
    case REC_FEED_RESV_DELETE:
        resv_on_delete(obj, d);
        break;
    }
}

ctl_result rec_domain_reconcile_claim(rec_domain *d, const char *namespace_, const char *name)
{
    return rec_claim_reconcile(NULL, namespace_, name, d);
}

ctl_result rec_domain_reconcile_pool(rec_domain *d, const char *name)
{
    return rec_pool_reconcile(NULL, NULL, name, d);
}

ctl_result rec_domain_reconcile_reservation(rec_domain *d, const char *name)
{
    return rec_sweep_reconcile(NULL, NULL, name, d);
}

void rec_domain_flush_events(rec_domain *d, int timeout_ms)
{
    (void)rec_events_flush(d->events, timeout_ms);
}
