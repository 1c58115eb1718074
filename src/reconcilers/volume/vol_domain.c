/*
 * vol_domain - the volume domain's informers and its "storagepool" controller.
 *
 * A StoragePool's reconcile: the finalizer (kept while any Reservation of
 * the pool exists, the API server asked before it goes), the ledger
 * (vol_ledger: rebuilt by a recount when the status has none, and recounted
 * from a consistent LIST when the cached Reservations say something was
 * freed; at most one recount per pool every VOL_RECOUNT_INTERVAL; what the
 * cache shows of a pool's Reservations is summed by vol_held), Ready
 * from the node agent's report (vol_pool), and the status, written by PUT at
 * the cached resourceVersion: the ledger's compare-and-swap (README.md).
 *
 * Reconciles are triggered by the pool, by any Reservation of the pool (its
 * spec.pool.name) and by its Node coming or going; they come back by
 * themselves when the agent's report would turn stale or an admission
 * would expire.
 */
#include "vol.h"
#include "vol_held.h"
#include "vol_internal.h"
#include "vol_ledger.h"
#include "vol_pool.h"

#include "inf_map.h"
#include "kc_error.h"
#include "pv_clock.h"
#include "pv_json.h"
#include "rec_reserve.h"
#include "rec_util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const kc_ref vol_pools_ref = {
    .group = "provisio.dev", .version = "v1alpha1", .resource = "storagepools"};
const kc_ref vol_resv_ref = {
    .group = "provisio.dev", .version = "v1alpha1", .resource = "reservations"};
const kc_ref vol_nodes_ref = {.group = "", .version = "v1", .resource = "nodes"};
const kc_ref vol_volumes_ref = {
    .group = "provisio.dev", .version = "v1alpha1", .resource = "volumes"};

/* ---- the pool's Reservations, as the cache shows them ------------------------- */

/* A Reservation the cache shows: its slot and deadline. */
typedef struct held {
    const char *uid; /* spec.slot: borrowed from the store object, or owned (!from_store) */
    int64_t until;
} held;

/*
 * A pool's Reservations as the cache shows them: the sums and the landed
 * admissions of one vol_held snapshot (a->held), or, when that broke (out of
 * memory in its handler), the same read from the store.
 */
typedef struct held_list {
    vol_held_sum sum;
    bool from_store;
    json_object **objs; /* from_store: the store's objects, kept while v borrows */
    size_t n_objs;
    held *v; /* the landed admissions asked (snapshot), or every keyed Reservation (store) */
    size_t n;
} held_list;

static void held_free(held_list *h)
{
    if (!h->from_store)
        for (size_t i = 0; i < h->n; i++)
            free((char *)h->v[i].uid);
    store_objs_free(h->objs, h->n_objs);
    free(h->v);
    memset(h, 0, sizeof *h);
}

static int held_from_store(vol_app *a, const char *pool, held_list *h)
{
    h->from_store = true;
    int rc = store_by_index(a->resv_store, VOL_IDX_POOL, pool, &h->objs, &h->n_objs);
    if (rc != KC_OK)
        return rc;
    h->sum.n = h->n_objs;
    h->v = h->n_objs ? calloc(h->n_objs, sizeof *h->v) : NULL;
    if (h->n_objs && !h->v) {
        held_free(h);
        return KC_ERR_NOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < h->n_objs; i++) {
        int64_t bytes;
        bool valid;
        if (!vol_held_read(h->objs[i], &h->v[k].uid, &bytes, &h->v[k].until, &valid))
            continue; /* not ours to count: the schema requires all of it */
        if (valid) {
            h->sum.valid_bytes += bytes;
            h->sum.valid_count++;
        }
        k++;
    }
    h->n = k;
    return KC_OK;
}

/* What the cache shows of pool's Reservations, and which of the n
 * admissions asked (the ledger's in flight; may be NULL when n is 0)
 * landed. 0 or KC_ERR_NOMEM. */
static int held_of(vol_app *a, const char *pool, const vol_admission *asked, size_t n, held_list *h)
{
    memset(h, 0, sizeof *h);
    bool *landed = n ? calloc(n, sizeof *landed) : NULL;
    h->v = n ? calloc(n, sizeof *h->v) : NULL;
    if (n && (!landed || !h->v)) {
        free(landed);
        free(h->v);
        h->v = NULL;
        return KC_ERR_NOMEM;
    }
    if (!vol_held_snapshot(a->held, pool, asked, n, &h->sum, landed)) {
        free(landed);
        free(h->v);
        h->v = NULL;
        return held_from_store(a, pool, h);
    }
    int rc = KC_OK;
    for (size_t i = 0; i < n && rc == KC_OK; i++) {
        if (!landed[i])
            continue;
        char *uid = strdup(asked[i].uid);
        if (!uid)
            rc = KC_ERR_NOMEM;
        else
            h->v[h->n++] = (held){uid, asked[i].until};
    }
    free(landed);
    if (rc != KC_OK)
        held_free(h);
    return rc;
}

/* vol_landed_fn over the cache: the Reservation of uid with deadline until. */
static bool cache_landed(void *ctx, const char *uid, int64_t until)
{
    const held_list *h = ctx;
    for (size_t i = 0; i < h->n; i++)
        if (h->v[i].until == until && !strcmp(h->v[i].uid, uid))
            return true;
    return false;
}

/* ---- the recount ------------------------------------------------------------------ */

typedef struct listed_acc {
    vol_listed *v;
    char **uids; /* owned copies: the items are released as they are read */
    size_t n, cap;
} listed_acc;

static void listed_free(listed_acc *acc)
{
    for (size_t i = 0; i < acc->n; i++)
        free(acc->uids[i]);
    free(acc->uids);
    free(acc->v);
    memset(acc, 0, sizeof *acc);
}

static int listed_add(json_object *item, void *user)
{
    listed_acc *acc = user;
    const char *slot;
    int64_t bytes, until;
    bool valid;
    int rc = KC_OK;
    if (vol_held_read(item, &slot, &bytes, &until, &valid)) {
        if (acc->n == acc->cap) {
            size_t cap = acc->cap ? 2 * acc->cap : 64;
            vol_listed *v = realloc(acc->v, cap * sizeof *v);
            if (v)
                acc->v = v;
            char **u = v ? realloc(acc->uids, cap * sizeof *u) : NULL;
            if (u)
                acc->uids = u;
            if (!v || !u)
                rc = KC_ERR_NOMEM;
            else
                acc->cap = cap;
        }
        time_t created = 0;
        rec_parse_time(rec_obj_str(item, "metadata.creationTimestamp"), &created);
        char *uid = rc == KC_OK ? strdup(slot) : NULL;
        if (rc == KC_OK && !uid)
            rc = KC_ERR_NOMEM;
        if (rc == KC_OK) {
            acc->uids[acc->n] = uid;
            acc->v[acc->n] = (vol_listed){uid, bytes, (int64_t)created, until};
            acc->n++;
        }
    }
    json_object_put(item);
    return rc;
}

/*
 * Recount l from a consistent LIST of the pool's Reservations (every page,
 * items decoded one at a time). t0 is taken before the request goes out.
 */
static int recount(vol_app *a, const char *pool, vol_ledger *l, kc_error *err)
{
    char *selector = NULL;
    int rc = rec_msg(&selector, "%s,%s=%s", VOL_RESV_SELECTOR, REC_LABEL_POOL, pool);
    if (rc != KC_OK)
        return rc;
    int64_t t0 = (int64_t)time(NULL);
    listed_acc acc = {0};
    char *cont = NULL;
    do {
        kc_list_opts lo = {.label_selector = selector, .limit = 500, .continue_token = cont};
        json_object *page = NULL;
        rc = kc_list_each(a->client, &vol_resv_ref, &lo, listed_add, &acc, &page, NULL, err);
        free(cont);
        cont = NULL;
        const char *next = rc == KC_OK ? rec_obj_str(page, "metadata.continue") : NULL;
        if (next && *next && !(cont = strdup(next)))
            rc = KC_ERR_NOMEM;
        json_object_put(page);
    } while (rc == KC_OK && cont);
    free(selector);
    if (rc == KC_OK)
        vol_ledger_recount(l, acc.v, acc.n, t0);
    listed_free(&acc);
    return rc;
}

/* The time of a pool's last recount: the map's key lives here (inf_map keeps
 * the key pointer it was given). */
typedef struct recount_mark {
    char *pool;
    double at; /* monotonic seconds */
} recount_mark;

static void mark_free(recount_mark *m)
{
    if (m) {
        free(m->pool);
        free(m);
    }
}

/* Whether a recount of pool may run now; else *wait says how long. */
static bool recount_allowed(vol_app *a, const char *pool, double *wait)
{
    double now = pv_clock_monotonic();
    pthread_mutex_lock(&a->mu);
    recount_mark *m = inf_map_get(&a->last_recount, pool);
    bool ok = !m || now - m->at >= VOL_RECOUNT_INTERVAL;
    *wait = ok ? 0 : VOL_RECOUNT_INTERVAL - (now - m->at);
    if (ok && !m && (m = calloc(1, sizeof *m)) &&
        (!(m->pool = strdup(pool)) || inf_map_put(&a->last_recount, m->pool, m) != KC_OK)) {
        mark_free(m); /* out of memory: this recount goes unpaced */
        m = NULL;
    }
    if (ok && m)
        m->at = now;
    pthread_mutex_unlock(&a->mu);
    return ok;
}

static void recount_forget(vol_app *a, const char *pool)
{
    pthread_mutex_lock(&a->mu);
    mark_free(inf_map_remove(&a->last_recount, pool));
    pthread_mutex_unlock(&a->mu);
}

/* ---- the reconcile ------------------------------------------------------------------ */

/* An admission past its deadline + grace: only a recount may drop it. */
static bool admission_expired(const vol_ledger *l, int64_t now)
{
    for (size_t i = 0; i < l->n_inflight; i++)
        if (l->inflight[i].until + VOL_ADMIT_GRACE < now)
            return true;
    return false;
}

static double min_d(double x, double y)
{
    return x < y ? x : y;
}

/* Whether the API server still has a Reservation of pool (the cache may lag). */
static int server_has_reservations(vol_app *a, const char *pool, bool *has, kc_error *err)
{
    char *selector = NULL;
    int rc = rec_msg(&selector, "%s,%s=%s", VOL_RESV_SELECTOR, REC_LABEL_POOL, pool);
    if (rc != KC_OK)
        return rc;
    kc_list_opts lo = {.label_selector = selector, .limit = 1};
    json_object *list = NULL;
    rc = kc_list(a->client, &vol_resv_ref, &lo, &list, err);
    free(selector);
    if (rc == KC_OK) {
        json_object *items = rec_obj_at(list, "items");
        *has = json_object_is_type(items, json_type_array) && json_object_array_length(items) > 0;
    }
    json_object_put(list);
    return rc;
}

static ctl_result write_status(vol_app *a, const char *name, json_object *pool, json_object *st)
{
    kc_ref ref = vol_pools_ref;
    ref.name = name;
    kc_error err = {0};
    bool written = false;
    int rc = rec_update_status(a->client, &ref, pool, st, NULL, &written, &err);
    ctl_result res = ctl_done();
    if (rc == KC_OK && written)
        rec_stale_note_obj(a->stale, pool);
    if (rc == KC_ERR_CONFLICT)
        res = ctl_requeue(); /* somebody wrote first: decide again from a fresh read */
    else if (rc == KC_ERR_NOT_FOUND)
        res = ctl_done();
    else if (rc != KC_OK)
        res = ctl_error(rc, "writing the StoragePool status: %s",
                        err.message ? err.message : kc_strerror(rc));
    kc_error_clear(&err);
    return res;
}

/* The pool being deleted: the finalizer goes once nothing of it is held. */
static ctl_result reconcile_deleting(vol_app *a, const char *name, json_object *pool,
                                     const held_list *h)
{
    kc_ref ref = vol_pools_ref;
    ref.name = name;
    kc_error err = {0};
    ctl_result res = ctl_done();
    if (h->sum.n == 0) {
        bool has = true;
        int rc = server_has_reservations(a, name, &has, &err);
        if (rc == KC_OK && !has) {
            rc =
                rec_ensure_finalizer(a->client, &ref, pool, REC_FINALIZER, false, NULL, NULL, &err);
            if (rc == KC_OK || rc == KC_ERR_NOT_FOUND) {
                recount_forget(a, name);
                kc_error_clear(&err);
                return ctl_done();
            }
        }
        if (rc != KC_OK) {
            res = rc == KC_ERR_CONFLICT ? ctl_requeue()
                                        : ctl_error(rc, "releasing StoragePool %s: %s", name,
                                                    err.message ? err.message : kc_strerror(rc));
            kc_error_clear(&err);
            return res;
        }
        /* The server still has one the cache does not show yet: soon. */
        return ctl_requeue_after(1.0);
    }
    char *msg = NULL;
    json_object *st = NULL;
    int rc = rec_msg(&msg,
                     "StoragePool %s is being deleted; it stays until the %zu volume(s) placed "
                     "in it are deleted and their directories removed",
                     name, h->sum.n);
    if (rc == KC_OK) {
        rc = rec_status_base(rec_obj_at(pool, "status"), &st);
        json_object *cached = rec_obj_at(pool, "status");
        /* Keep everything else of the status as it is. */
        json_object_object_foreach(cached, key, val)
        {
            if (rc == KC_OK && strcmp(key, "conditions") && !rec_put_copy(st, key, val))
                rc = KC_ERR_NOMEM;
        }
        if (rc == KC_OK)
            rc = rec_set_condition(st, REC_COND_READY, REC_COND_FALSE, "Terminating", msg,
                                   rec_obj_generation(pool), time(NULL), NULL);
    }
    free(msg);
    if (rc != KC_OK) {
        json_object_put(st);
        return ctl_error(rc, "building the StoragePool status: %s", kc_strerror(rc));
    }
    res = write_status(a, name, pool, st);
    json_object_put(st);
    if (res.outcome == CTL_DONE)
        res = ctl_requeue_after(5.0);
    return res;
}

static ctl_result pool_reconcile(const ctl_ctx *ctx, const char *namespace_, const char *name,
                                 void *user)
{
    (void)ctx;
    (void)namespace_;
    vol_app *a = user;
    if (!inf_has_synced(a->pools) || !inf_has_synced(a->resv) || !inf_has_synced(a->nodes) ||
        !inf_handler_has_synced(a->held_handler))
        return ctl_requeue_after(0.1);
    json_object *pool = NULL;
    if (store_get(a->pools_store, name, &pool) != KC_OK) {
        recount_forget(a, name);
        return ctl_done();
    }
    if (rec_stale_check_obj(a->stale, pool)) {
        store_obj_put(pool); /* our newer write is on its way and enqueues the pool */
        return ctl_done();
    }
    held_list h = {0};
    ctl_result res;
    int rc;
    if (rec_obj_is_deleting(pool)) {
        rc = held_of(a, name, NULL, 0, &h);
        res = rc == KC_OK ? reconcile_deleting(a, name, pool, &h)
                          : ctl_error(rc, "reading the Reservation cache: %s", kc_strerror(rc));
        goto out;
    }
    kc_ref ref = vol_pools_ref;
    ref.name = name;
    kc_error err = {0};
    bool sent = false;
    rc = rec_ensure_finalizer(a->client, &ref, pool, REC_FINALIZER, true, NULL, &sent, &err);
    if (rc == KC_OK && sent)
        rec_stale_note_obj(a->stale, pool);
    if (rc != KC_OK || sent) {
        /* Sent: the watch brings the pool back with it. */
        res = rc == KC_OK || rc == KC_ERR_CONFLICT
                  ? ctl_done()
                  : ctl_error(rc, "adding the finalizer: %s",
                              err.message ? err.message : kc_strerror(rc));
        if (rc == KC_ERR_CONFLICT)
            res = ctl_requeue();
        kc_error_clear(&err);
        goto out;
    }

    time_t now = time(NULL);
    vol_ledger l;
    char *why = NULL;
    rc = vol_ledger_read(pool, &l, &why);
    /* Read after the ledger: asked which of its admissions landed. */
    int hrc = held_of(a, name, rc == KC_OK ? l.inflight : NULL, rc == KC_OK ? l.n_inflight : 0, &h);
    if (hrc != KC_OK) {
        free(why);
        vol_ledger_close(&l);
        res = ctl_error(hrc, "reading the Reservation cache: %s", kc_strerror(hrc));
        goto out;
    }
    const char *cond = NULL, *reason = NULL;
    char *message = NULL;
    double again = VOL_RECHECK_MAX;
    if (rc == KC_ERR_INVALID_ARG) {
        cond = REC_COND_FALSE;
        reason = VOL_REASON_INVALID;
        message = why;
        why = NULL;
        rc = KC_OK;
    } else if (rc == KC_OK && (vol_ledger_recount_due(&l, h.sum.valid_bytes, cache_landed, &h) ||
                               admission_expired(&l, (int64_t)now))) {
        double wait = 0;
        if (recount_allowed(a, name, &wait)) {
            rc = recount(a, name, &l, &err);
            if (rc != KC_OK) {
                res = ctl_error(rc, "recounting StoragePool %s: %s", name,
                                err.message ? err.message : kc_strerror(rc));
                kc_error_clear(&err);
                vol_ledger_close(&l);
                goto out;
            }
        } else {
            again = min_d(again, wait);
        }
    }
    free(why);
    if (rc != KC_OK) {
        vol_ledger_close(&l);
        res = ctl_error(rc, "reading the ledger: %s", kc_strerror(rc));
        goto out;
    }
    /* Admissions the cache shows landed leave the ledger with this write. */
    vol_ledger_forget_landed(&l, cache_landed, &h);

    vol_agent_report r;
    vol_pool_report(pool, now, &r);
    if (!cond) {
        json_object *node = NULL;
        const char *node_name = rec_obj_str(pool, "spec.nodeName");
        if (node_name)
            store_get(a->nodes_store, node_name, &node);
        rc = vol_pool_readiness(pool, vol_node_state_of(node), &r, &cond, &reason, &message);
        store_obj_put(node);
    }
    json_object *st = NULL;
    if (rc == KC_OK)
        rc = vol_pool_status(rec_obj_at(pool, "status"), &l, h.sum.valid_count, &r,
                             vol_pool_quota_mode(pool), cond, reason, message,
                             rec_obj_generation(pool), now, &st);
    free(message);
    if (rc != KC_OK) {
        vol_ledger_close(&l);
        res = ctl_error(rc, "building the StoragePool status: %s", kc_strerror(rc));
        goto out;
    }
    /* This process's waiting Volumes, admitted in the same write (only into
     * a Ready pool with a ledger). */
    vol_batch in = {0}, out = {0};
    if (rc == KC_OK && l.known && cond && !strcmp(cond, REC_COND_TRUE)) {
        rc = vol_admit_batch(a, name, &l, (int64_t)now, &in, &out);
        if (rc == KC_OK && (in.n || out.n))
            rc = vol_ledger_write(&l, st);
    }
    if (rc != KC_OK) {
        vol_batch_clear(&in);
        vol_batch_clear(&out);
        json_object_put(st);
        vol_ledger_close(&l);
        res = ctl_error(rc, "admitting into StoragePool %s: %s", name, kc_strerror(rc));
        goto out;
    }
    res = write_status(a, name, pool, st);
    json_object_put(st);
    if (res.outcome == CTL_DONE)
        vol_admit_commit(a, name, &in, &out);
    else if (in.n && res.outcome == CTL_REQUEUE)
        res = ctl_requeue_after(0.01); /* lost the race: again at once, from a fresher cache */
    /* A failed write stays an error (logged, retried with backoff); replacing
     * it here lost its message (a leak LeakSanitizer reported). */
    vol_batch_clear(&in);
    vol_batch_clear(&out);

    /* Come back when the agent's report turns stale, and when an admission
     * can be dropped. */
    time_t hb;
    if (r.fresh && rec_parse_time(rec_obj_str(pool, "status.agent.heartbeatTime"), &hb))
        again = min_d(again, (double)(hb + VOL_AGENT_STALE + 1 - now));
    for (size_t i = 0; i < l.n_inflight; i++)
        again = min_d(again, (double)(l.inflight[i].until + VOL_ADMIT_GRACE + 1 - now));
    vol_ledger_close(&l);
    if (res.outcome == CTL_DONE)
        res = ctl_requeue_after(again < 0.1 ? 0.1 : again);
out:
    held_free(&h);
    store_obj_put(pool);
    return res;
}

/* ---- triggers ------------------------------------------------------------------------ */

static int resv_to_pool(json_object *obj, ctl_keys *out, void *user)
{
    (void)user;
    const char *pool = rec_obj_str(obj, "spec.pool.name");
    return pool ? ctl_keys_add(out, NULL, pool) : KC_OK;
}

static int node_to_pools(json_object *obj, ctl_keys *out, void *user)
{
    vol_app *a = user;
    const char *node = rec_obj_str(obj, "metadata.name");
    if (!node)
        return KC_OK;
    char **keys = NULL;
    size_t n = 0;
    int rc = store_index_keys(a->pools_store, VOL_IDX_NODE, node, &keys, &n);
    for (size_t i = 0; rc == KC_OK && i < n; i++)
        rc = ctl_keys_add(out, NULL, keys[i]);
    store_keys_free(keys, n);
    return rc;
}

/* ---- the sums' handler (vol_held.h) ------------------------------------------------------- */

static void held_on_add(json_object *obj, void *user)
{
    vol_held_add(user, obj);
}

static void held_on_update(json_object *old_obj, json_object *new_obj, void *user)
{
    vol_held_update(user, old_obj, new_obj);
}

static void held_on_delete(json_object *obj, void *user)
{
    vol_held_remove(user, obj);
}

/* ---- setup ------------------------------------------------------------------------------ */

static void app_free(void *arg)
{
    vol_app *a = arg;
    size_t pos = 0;
    void *v;
    while (inf_map_next(&a->last_recount, &pos, NULL, &v))
        mark_free(v);
    inf_map_close(&a->last_recount);
    vol_admit_close(a);
    vol_dyn_close(a);
    rec_stale_free(a->stale);
    vol_held_free(a->held);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

int vol_setup(const rec_env *env)
{
    vol_app *a = calloc(1, sizeof *a);
    if (!a)
        return KC_ERR_NOMEM;
    a->env = *env;
    a->client = env->client;
    pthread_mutex_init(&a->mu, NULL);
    inf_map_init(&a->last_recount);
    inf_map_init(&a->waiting);
    inf_map_init(&a->admitted);
    inf_map_init(&a->cap_marks);
    int rc = rec_stale_new(&a->stale);
    if (rc == KC_OK)
        rc = vol_held_new(&a->held);
    if (rc != KC_OK) {
        app_free(a);
        return rc;
    }
    rc = env->add_cleanup(env, app_free, a);
    if (rc != KC_OK) {
        app_free(a);
        return rc;
    }
    inf_opts popts = {.store_mode = INF_STORE_SHARED};
    inf_opts ropts = {.label_selector = VOL_RESV_SELECTOR, .store_mode = INF_STORE_COMPACT};
    inf_opts nopts = {.store_mode = INF_STORE_SHARED};
    if ((rc = inf_factory_get(env->factory, &vol_pools_ref, &popts, &a->pools)) != KC_OK ||
        (rc = inf_factory_get(env->factory, &vol_resv_ref, &ropts, &a->resv)) != KC_OK ||
        (rc = inf_factory_get(env->factory, &vol_nodes_ref, &nopts, &a->nodes)) != KC_OK)
        return rc;
    a->pools_store = inf_store(a->pools);
    a->resv_store = inf_store(a->resv);
    a->nodes_store = inf_store(a->nodes);
    if ((rc = store_add_index(a->pools_store, VOL_IDX_NODE, store_index_field,
                              (void *)"spec.nodeName")) != KC_OK ||
        (rc = store_add_index(a->resv_store, VOL_IDX_POOL, store_index_field,
                              (void *)"spec.pool.name")) != KC_OK)
        return rc;
    /* Before the pool controller's own handler on the Reservations: a pool
     * enqueued for a Reservation's change finds the sums changed. */
    inf_handler_fns held_fns = {.on_add = held_on_add,
                                .on_update = held_on_update,
                                .on_delete = held_on_delete,
                                .user = a->held,
                                .no_resync = true};
    if ((rc = inf_add_handler(a->resv, &held_fns, &a->held_handler)) != KC_OK)
        return rc;
    if ((rc = rec_env_new_controller(env, VOL_POOL_CONTROLLER, pool_reconcile, a, &a->pool_ctl)) !=
            KC_OK ||
        (rc = ctl_watch_for(a->pool_ctl, a->pools)) != KC_OK ||
        (rc = ctl_watch_map(a->pool_ctl, a->resv, resv_to_pool, a)) != KC_OK ||
        (rc = ctl_watch_map(a->pool_ctl, a->nodes, node_to_pools, a)) != KC_OK)
        return rc;
    if ((rc = vol_claim_setup(a, env)) != KC_OK)
        return rc;
    if ((rc = vol_pv_setup(a, env)) != KC_OK)
        return rc;
    return vol_dyn_setup(a, env);
}
