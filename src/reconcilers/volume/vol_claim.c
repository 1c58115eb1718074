/*
 * vol_claim - the "volume" controller: a Volume placed in a StoragePool
 * through the pool's ledger (README.md "The ledger", "A volume's life").
 *
 * A reconcile: the finalizer; the Reservations of the claim's uid from the
 * cache (a valid one means placed; an invalid one, made after its deadline,
 * holds nothing and is released); otherwise a pool is chosen (spec.pool, or
 * the Ready pool with the most bytes free, on spec.nodeName if set), the
 * claim is admitted into its ledger (PUT of the pool's status at the cached
 * resourceVersion) and the Reservation created with the admission's
 * deadline, checked against the creationTimestamp the API server gave it.
 * Deleting: each Reservation is released once vol_release_due says so, then
 * the finalizer goes.
 *
 * What comes after the Reservation (the node agent's directory, the
 * PersistentVolume and its claim) is not built yet: a placed Volume says
 * Ready=False Provisioning, naming what it waits for.
 */
#include "vol_internal.h"
#include "vol_ledger.h"
#include "vol_pool.h"

#include "kc_error.h"
#include "kc_quantity.h"
#include "pv_json.h"
#include "rec_events.h"
#include "rec_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define VOL_KIND "Volume"
#define VOL_REASON_INSUFFICIENT "InsufficientCapacity"
#define VOL_REASON_POOL_NOT_FOUND "PoolNotFound"
#define VOL_REASON_POOL_NOT_READY "PoolNotReady"
#define VOL_CREATE_MARGIN 3      /* s: an admission this close to its deadline is not used */
#define VOL_WAIT_RECHECK 10.0    /* s: a waiting Volume looks again (the pool wakes it sooner) */
#define VOL_TEARDOWN_RECHECK 5.0 /* s: a deleted Volume looks at its PV again */

/* ---- the spec ---------------------------------------------------------------------- */

typedef struct vol_want {
    int64_t size;
    const char *pool; /* borrowed from the Volume object; NULL: any */
    const char *node; /* NULL: any */
    const char *cls;  /* dynamic provisioning: the PVC's StorageClass; NULL: any pool */
} vol_want;

/* 0, or KC_ERR_INVALID_ARG with *why. */
static int want_of(json_object *vol, vol_want *w, char **why)
{
    memset(w, 0, sizeof *w);
    json_object *size = rec_obj_at(vol, "spec.size");
    kc_error err = {0};
    int rc = KC_ERR_INVALID_ARG;
    if (json_object_is_type(size, json_type_int)) {
        w->size = json_object_get_int64(size);
        rc = KC_OK;
    } else if (json_object_is_type(size, json_type_string) &&
               kc_quantity_bytes(json_object_get_string(size), &w->size, &err) == KC_OK) {
        rc = KC_OK;
    }
    kc_error_clear(&err);
    if (rc != KC_OK || w->size <= 0)
        return rec_msg(why, "spec.size must be a positive whole number of bytes such as 10Gi") ==
                       KC_OK
                   ? KC_ERR_INVALID_ARG
                   : KC_ERR_NOMEM;
    w->pool = rec_obj_str(vol, "spec.pool");
    w->node = rec_obj_str(vol, "spec.nodeName");
    w->cls = rec_obj_annotation(vol, VOL_ANN_CLASS);
    return KC_OK;
}

/* ---- the claim's Reservations ------------------------------------------------------------ */

typedef struct claim_resv {
    json_object *obj; /* store object (reference held by the list) */
    const char *name;
    const char *pool;
    int64_t bytes, until;
    bool valid;
} claim_resv;

typedef struct claim_held {
    json_object **objs;
    size_t n;
    claim_resv *v;
} claim_held;

static void claim_held_free(claim_held *h)
{
    store_objs_free(h->objs, h->n);
    free(h->v);
    memset(h, 0, sizeof *h);
}

/* r from the Reservation o (borrowed: r points into it). */
static void claim_resv_of(json_object *o, claim_resv *r)
{
    r->obj = o;
    r->name = rec_obj_str(o, "metadata.name");
    r->pool = rec_obj_str(o, "spec.pool.name");
    json_object *b = rec_obj_at(o, "spec.bytes");
    r->bytes = json_object_is_type(b, json_type_int) ? json_object_get_int64(b) : 0;
    time_t created, until;
    bool times = rec_parse_time(rec_obj_str(o, "metadata.creationTimestamp"), &created) &&
                 rec_parse_time(rec_obj_str(o, "spec.admittedUntil"), &until);
    r->until = times ? (int64_t)until : 0;
    r->valid = times && r->bytes > 0 && r->name && r->pool &&
               vol_resv_valid((int64_t)created, (int64_t)until);
}

static int claim_held_of(vol_app *a, const char *uid, claim_held *h)
{
    memset(h, 0, sizeof *h);
    int rc = store_by_index(a->resv_store, VOL_IDX_CLAIM, uid, &h->objs, &h->n);
    if (rc != KC_OK)
        return rc;
    h->v = h->n ? calloc(h->n, sizeof *h->v) : NULL;
    if (h->n && !h->v) {
        claim_held_free(h);
        return KC_ERR_NOMEM;
    }
    for (size_t i = 0; i < h->n; i++)
        claim_resv_of(h->objs[i], &h->v[i]);
    return KC_OK;
}

/* ---- status -----------------------------------------------------------------------------------
 */

static ctl_result write_volume_status(vol_app *a, json_object *vol, json_object *st)
{
    kc_ref ref = vol_volumes_ref;
    ref.namespace_ = rec_obj_str(vol, "metadata.namespace");
    ref.name = rec_obj_str(vol, "metadata.name");
    kc_error err = {0};
    bool written = false;
    /* vol is a read of the compact Volume store: ours, lent to the body. */
    int rc = rec_update_status_lent(a->client, &ref, vol, st, NULL, &written, &err);
    ctl_result res = ctl_done();
    if (rc == KC_OK && written)
        rec_stale_note_obj(a->stale, vol);
    if (rc == KC_ERR_CONFLICT)
        res = ctl_requeue();
    else if (rc != KC_OK && rc != KC_ERR_NOT_FOUND)
        res = ctl_error(rc, "writing the Volume status: %s",
                        err.message ? err.message : kc_strerror(rc));
    kc_error_clear(&err);
    return res;
}

/* Ready=False reason message (malloc'd, taken), nothing held. */
static ctl_result pending(vol_app *a, json_object *vol, const char *reason, char *message,
                          double again)
{
    /* Repeats fold into one Event (rec_events: same reason and message). */
    if (a->events && message && strcmp(reason, VOL_REASON_PROVISIONING) != 0)
        rec_event(a->events, vol, "provisio.dev/v1alpha1", VOL_KIND, REC_EVENT_WARNING, reason,
                  "%s", message);
    json_object *st = NULL;
    int rc = rec_status_not_ready(rec_obj_at(vol, "status"), reason, message,
                                  rec_obj_generation(vol), time(NULL), &st);
    free(message);
    if (rc != KC_OK)
        return ctl_error(rc, "building the Volume status: %s", kc_strerror(rc));
    ctl_result res = write_volume_status(a, vol, st);
    json_object_put(st);
    if (res.outcome == CTL_DONE && again > 0)
        res = ctl_requeue_after(again);
    return res;
}

/* The status of a Volume placed in pool (may be NULL: gone from the
 * cache), held by the Reservation resv (NULL: just made, no status yet):
 * waiting for the node agent's directory, then for the PV and its claim to
 * be bound (made here, vol_pv.c). */
static ctl_result placed(vol_app *a, json_object *vol, const vol_want *w, const char *pool_name,
                         json_object *pool, json_object *resv)
{
    const char *node = pool ? rec_obj_str(pool, "spec.nodeName") : NULL;
    const char *ppath = pool ? rec_obj_str(pool, "spec.path") : NULL;
    const char *phase = resv ? rec_obj_str(resv, "status.phase") : NULL;
    const char *dir = resv ? rec_obj_str(resv, "status.path") : NULL;
    json_object *used = resv ? rec_obj_at(resv, "status.usedBytes") : NULL;
    char *path = NULL, *msg = NULL;
    const char *reason = VOL_REASON_PROVISIONING, *cond = REC_COND_FALSE;
    vol_binding b = {0};
    int rc = KC_OK;
    if (dir)
        rc = rec_msg(&path, "%s", dir);
    else if (ppath)
        rc = rec_msg(&path, "%s/%s_%s_%s", ppath, rec_obj_str(vol, "metadata.namespace"),
                     rec_obj_str(vol, "metadata.name"), rec_obj_str(vol, "metadata.uid"));
    if (rc != KC_OK)
        return ctl_error(rc, "out of memory");
    ctl_result res = ctl_done();
    if (phase && !strcmp(phase, "Ready") && dir && node) {
        const char *cls = rec_obj_annotation(vol, VOL_ANN_CLASS);
        vol_pv_want pw = {.size = w->size,
                          .node = node,
                          .path = dir,
                          .storage_class = cls ? cls : rec_obj_str(pool, "spec.storageClassName")};
        rc = vol_pv_ensure(a, vol, &pw, &b);
        if (rc != KC_OK) {
            res = ctl_error(rc, "making the PersistentVolume and its claim: %s",
                            b.message ? b.message : kc_strerror(rc));
            vol_binding_clear(&b);
            free(path);
            return res;
        }
        if (b.ready) {
            if (a->events && !rec_condition_is_true(rec_obj_at(vol, "status"), REC_COND_READY))
                rec_event(a->events, vol, "provisio.dev/v1alpha1", VOL_KIND, REC_EVENT_NORMAL,
                          VOL_REASON_BOUND,
                          "PersistentVolumeClaim %s Bound to PersistentVolume %s on node %s", b.pvc,
                          b.pv, node);
            cond = REC_COND_TRUE;
            reason = VOL_REASON_BOUND;
            rc = rec_msg(&msg,
                         "%lld bytes in StoragePool %s on node %s; PersistentVolumeClaim %s is "
                         "Bound to PersistentVolume %s",
                         (long long)w->size, pool_name, node, b.pvc, b.pv);
        } else {
            reason = b.reason;
            msg = b.message;
            b.message = NULL;
            res = ctl_requeue_after(VOL_RECHECK_MAX); /* PV and PVC events come sooner */
        }
    } else if (phase && !strcmp(phase, "Failed")) {
        const char *why = rec_obj_str(resv, "status.message");
        reason = VOL_REASON_DIR_FAILED;
        if (a->events)
            rec_event(a->events, vol, "provisio.dev/v1alpha1", VOL_KIND, REC_EVENT_WARNING, reason,
                      "the node agent on node %s could not make the directory: %s",
                      node ? node : "?", why ? why : "(no message)");
        rc = rec_msg(&msg, "the node agent on node %s could not make the directory: %s",
                     node ? node : "?", why ? why : "(no message)");
    } else {
        rc = rec_msg(&msg,
                     "%lld bytes held in StoragePool %s%s%s; waiting for the node agent to make "
                     "the directory",
                     (long long)w->size, pool_name, node ? " on node " : "", node ? node : "");
    }
    json_object *st = NULL;
    if (rc == KC_OK)
        rc = rec_status_base(rec_obj_at(vol, "status"), &st);
    if (rc == KC_OK)
        rc = rec_set_condition(st, REC_COND_READY, cond, reason, msg, rec_obj_generation(vol),
                               time(NULL), NULL);
    if (rc == KC_OK &&
        !(pv_json_add_str(st, "pool", pool_name) && pv_json_add_str(st, "nodeName", node) &&
          pv_json_add_str(st, "path", path) && pv_json_add_i64(st, "capacityBytes", w->size) &&
          pv_json_add_str(st, "persistentVolumeName", b.pv) &&
          pv_json_add_str(st, "persistentVolumeClaimName", b.pv ? b.pvc : NULL) &&
          (!json_object_is_type(used, json_type_int) ||
           pv_json_add_i64(st, "usedBytes", json_object_get_int64(used)))))
        rc = KC_ERR_NOMEM;
    free(path);
    free(msg);
    vol_binding_clear(&b);
    if (rc != KC_OK) {
        json_object_put(st);
        return ctl_error(rc, "building the Volume status: %s", kc_strerror(rc));
    }
    ctl_result wr = write_volume_status(a, vol, st);
    json_object_put(st);
    return wr.outcome == CTL_DONE ? res : wr;
}

/* ---- choosing a pool ----------------------------------------------------------------------------
 */

typedef struct pool_pick {
    json_object *pool; /* store reference, owned */
    const char *reason;
    char *message; /* owned */
} pool_pick;

static bool pool_ready(json_object *pool)
{
    return rec_condition_is_true(rec_obj_at(pool, "status"), REC_COND_READY);
}

/* The pool uid was admitted into, as this process remembers it or a cached
 * ledger shows it: its own admission already holds its bytes there (the
 * room left no longer counts them). NULL when none. */
static json_object *admitted_pool(vol_app *a, const char *uid)
{
    json_object *pool = NULL;
    char *name = vol_admitted_pool(a, uid);
    if (name) {
        store_get(a->pools_store, name, &pool);
        free(name);
        if (pool)
            return pool;
    }
    json_object **pools = NULL;
    size_t n = 0;
    if (store_list(a->pools_store, &pools, &n) != KC_OK)
        return NULL;
    const char *found = NULL;
    for (size_t i = 0; i < n && !found; i++) {
        vol_ledger l;
        char *why = NULL;
        if (vol_ledger_read(pools[i], &l, &why) == KC_OK && vol_ledger_find(&l, uid))
            found = rec_obj_str(pools[i], "metadata.name");
        free(why);
        vol_ledger_close(&l);
    }
    if (found)
        store_get(a->pools_store, found, &pool);
    store_objs_free(pools, n);
    return pool;
}

/* The pool for w: *pick gets it, or a reason and message. */
static int choose_pool(vol_app *a, const char *uid, const vol_want *w, pool_pick *pick)
{
    memset(pick, 0, sizeof *pick);
    json_object *mine = admitted_pool(a, uid);
    if (mine) {
        const char *name = rec_obj_str(mine, "metadata.name");
        const char *node = rec_obj_str(mine, "spec.nodeName");
        if ((!w->pool || (name && !strcmp(name, w->pool))) &&
            (!w->node || (node && !strcmp(node, w->node))) && !rec_obj_is_deleting(mine)) {
            pick->pool = mine;
            return KC_OK;
        }
        store_obj_put(mine);
    }
    if (w->pool) {
        json_object *p = NULL;
        if (store_get(a->pools_store, w->pool, &p) != KC_OK) {
            pick->reason = VOL_REASON_POOL_NOT_FOUND;
            return rec_msg(&pick->message, "StoragePool %s does not exist", w->pool);
        }
        const char *node = rec_obj_str(p, "spec.nodeName");
        int rc = KC_OK;
        if (w->node && (!node || strcmp(node, w->node))) {
            pick->reason = VOL_REASON_INVALID;
            rc = rec_msg(&pick->message, "spec.pool %s is on node %s, not on spec.nodeName %s",
                         w->pool, node ? node : "?", w->node);
        } else if (rec_obj_is_deleting(p)) {
            pick->reason = VOL_REASON_POOL_NOT_READY;
            rc = rec_msg(&pick->message, "StoragePool %s is being deleted", w->pool);
        } else if (!pool_ready(p)) {
            json_object *c = rec_get_condition(rec_obj_at(p, "status"), REC_COND_READY);
            const char *m = c ? rec_obj_str(c, "message") : NULL;
            pick->reason = VOL_REASON_POOL_NOT_READY;
            rc = rec_msg(&pick->message, "StoragePool %s is not Ready%s%s", w->pool,
                         m && *m ? ": " : "", m && *m ? m : "");
        } else {
            vol_ledger l;
            char *why = NULL;
            bool known = vol_ledger_read(p, &l, &why) == KC_OK && l.known;
            free(why);
            if (known && l.capacity < w->size) {
                pick->reason = VOL_REASON_INVALID;
                rc = rec_msg(&pick->message,
                             "spec.size %lld is larger than StoragePool %s (%lld bytes)",
                             (long long)w->size, w->pool, (long long)l.capacity);
            } else if (known && vol_ledger_available(&l) < w->size) {
                pick->reason = VOL_REASON_INSUFFICIENT;
                rc = rec_msg(&pick->message,
                             "StoragePool %s has %lld bytes free, %lld wanted; waiting for space",
                             w->pool, (long long)vol_ledger_available(&l), (long long)w->size);
            } else {
                pick->pool = p;
                p = NULL;
            }
            vol_ledger_close(&l);
            if (!p)
                return KC_OK;
        }
        store_obj_put(p);
        return rc;
    }
    json_object **pools = NULL;
    size_t n = 0;
    int rc = w->node ? store_by_index(a->pools_store, VOL_IDX_NODE, w->node, &pools, &n)
                     : store_list(a->pools_store, &pools, &n);
    if (rc != KC_OK)
        return rc;
    const char *best = NULL; /* borrowed from pools[] */
    int64_t best_free = -1, largest_cap = 0, largest_free = 0;
    size_t ready = 0, serving = 0, other_class = 0;
    for (size_t i = 0; i < n; i++) {
        json_object *p = pools[i];
        if (rec_obj_is_deleting(p) || !pool_ready(p))
            continue;
        if (w->cls && !vol_pool_serves(p, w->cls)) {
            other_class++;
            continue;
        }
        serving++; /* Ready for this class, its ledger known or not yet */
        vol_ledger l;
        char *why = NULL;
        if (vol_ledger_read(p, &l, &why) != KC_OK || !l.known) {
            free(why);
            vol_ledger_close(&l);
            continue;
        }
        ready++;
        int64_t avail = vol_ledger_available(&l);
        if (l.capacity > largest_cap)
            largest_cap = l.capacity;
        if (avail > largest_free)
            largest_free = avail;
        const char *name = rec_obj_str(p, "metadata.name");
        if (name && avail >= w->size &&
            (avail > best_free || (avail == best_free && strcmp(name, best) < 0))) {
            best = name;
            best_free = avail;
        }
        vol_ledger_close(&l);
    }
    if (best) {
        /* A reference of our own (store objects are never json_object_get). */
        if (store_get(a->pools_store, best, &pick->pool) != KC_OK) {
            pick->reason = VOL_REASON_INSUFFICIENT;
            rc = rec_msg(&pick->message, "StoragePool %s went away; choosing again", best);
        }
    } else if (serving == 0 && other_class > 0) {
        /* Ready pools there are, but none for this class: say so, or the
         * user looks for a pool that is not Ready. */
        pick->reason = VOL_REASON_INSUFFICIENT;
        rc = rec_msg(&pick->message,
                     "no Ready StoragePool%s%s serves StorageClass %s (%zu Ready serve other "
                     "classes; spec.storageClassName of a StoragePool names the class it serves)",
                     w->node ? " on node " : "", w->node ? w->node : "", w->cls, other_class);
    } else if (ready == 0) {
        pick->reason = VOL_REASON_INSUFFICIENT;
        rc = rec_msg(&pick->message, "no StoragePool%s%s is Ready", w->node ? " on node " : "",
                     w->node ? w->node : "");
    } else if (largest_cap < w->size) {
        pick->reason = VOL_REASON_INVALID;
        rc = rec_msg(&pick->message,
                     "spec.size %lld is larger than every Ready StoragePool%s%s (the largest "
                     "holds %lld bytes)",
                     (long long)w->size, w->node ? " on node " : "", w->node ? w->node : "",
                     (long long)largest_cap);
    } else {
        pick->reason = VOL_REASON_INSUFFICIENT;
        rc = rec_msg(&pick->message,
                     "no Ready StoragePool%s%s has %lld bytes free (the most free: %lld); "
                     "waiting for space",
                     w->node ? " on node " : "", w->node ? w->node : "", (long long)w->size,
                     (long long)largest_free);
    }
    store_objs_free(pools, n);
    return rc;
}

/* ---- admission and the Reservation --------------------------------------------------------------
 */

/*
 * The Volume's admission into pool: what this process admitted, else an
 * entry the cached ledger shows (another replica's). 0 in *until when there
 * is none usable yet: then the Volume waits in the pool's list and the pool
 * is woken (vol_admit.c), and the result says when to look again.
 */
static ctl_result admission(vol_app *a, json_object *vol, const vol_want *w, json_object *pool,
                            int64_t now, int64_t *until)
{
    *until = 0;
    const char *uid = rec_obj_str(vol, "metadata.uid");
    const char *pname = rec_obj_str(pool, "metadata.name");
    int64_t u = 0;
    bool have = vol_admitted_get(a, uid, pname, &u);
    if (!have) {
        vol_ledger l;
        char *why = NULL;
        if (vol_ledger_read(pool, &l, &why) == KC_OK && l.known) {
            const vol_admission *had = vol_ledger_find(&l, uid);
            if (had) {
                have = true;
                u = had->until;
            }
        }
        free(why);
        vol_ledger_close(&l);
    }
    if (have && u - now >= VOL_CREATE_MARGIN) {
        *until = u;
        return ctl_done();
    }
    if (have) { /* too late to use: a recount drops it, then a new admission */
        vol_admitted_forget(a, uid);
        return ctl_requeue_after((double)(u + VOL_ADMIT_GRACE + 1 - now));
    }
    int rc = vol_wait_add(a, pname, uid, rec_obj_str(vol, "metadata.namespace"),
                          rec_obj_str(vol, "metadata.name"), w->size);
    if (rc != KC_OK)
        return ctl_error(rc, "out of memory");
    ctl_enqueue(a->pool_ctl, NULL, pname);
    return ctl_requeue_after(VOL_WAIT_RECHECK); /* woken sooner by the pool */
}

static ctl_result reserve(vol_app *a, json_object *vol, const vol_want *w, json_object *pool,
                          int64_t until)
{
    const char *uid = rec_obj_str(vol, "metadata.uid");
    const char *pname = rec_obj_str(pool, "metadata.name");
    char *name = NULL;
    int rc = rec_reserve_name(REC_POOL_KIND_STORAGE, pname, uid, &name, NULL);
    if (rc != KC_OK)
        return ctl_error(rc, "naming the Reservation of %s in %s", uid, pname);
    char deadline[REC_TIME_STRLEN];
    rec_format_time((time_t)until, deadline);
    rec_claim_ref claim = {.kind = VOL_KIND,
                           .namespace_ = rec_obj_str(vol, "metadata.namespace"),
                           .name = rec_obj_str(vol, "metadata.name"),
                           .uid = uid};
    /* The node agent removes the directory, then this finalizer. */
    rec_reserve_extra extra = {.admitted_until = deadline,
                               .node = rec_obj_str(pool, "spec.nodeName"),
                               .finalizer = VOL_DIR_FINALIZER,
                               .label = VOL_LABEL_RECLAIM,
                               .label_value = vol_retains(vol) ? "Retain" : "Delete"};
    rec_reservation got = {0};
    kc_error err = {0};
    ctl_result res = ctl_done();
    if ((int64_t)time(NULL) > until - 1) {
        res = ctl_requeue(); /* the deadline passed while we worked: admit again */
    } else {
        rc = rec_reserve_acquire_extra(a->client, REC_POOL_KIND_STORAGE, pname, name, uid, &claim,
                                       w->size, &extra, &got, &err);
        time_t created;
        if (rc == KC_OK &&
            !(rec_parse_time(got.created, &created) && vol_resv_valid((int64_t)created, until))) {
            /* Made after the deadline (a slow request): it holds nothing. */
            bool released = false;
            rc = rec_reserve_release(a->client, name, uid, &released, &err);
            res = rc == KC_OK ? ctl_requeue()
                              : ctl_error(rc, "releasing a late Reservation %s: %s", name,
                                          err.message ? err.message : kc_strerror(rc));
        } else if (rc == KC_OK) {
            vol_admitted_forget(a, uid);
            if (a->events)
                rec_event(a->events, vol, "provisio.dev/v1alpha1", VOL_KIND, REC_EVENT_NORMAL,
                          "Placed", "%lld bytes held in StoragePool %s on node %s",
                          (long long)w->size, pname, extra.node ? extra.node : "?");
            res = placed(a, vol, w, pname, pool, NULL);
        } else if (rc == REC_TAKEN) {
            res = ctl_error(KC_ERR_CONFLICT, "Reservation %s is held by another claim", name);
        } else if (rc == KC_ERR_CONFLICT) {
            res = ctl_requeue();
        } else {
            res = ctl_error(rc, "creating Reservation %s: %s", name,
                            err.message ? err.message : kc_strerror(rc));
        }
    }
    rec_reservation_clear(&got);
    kc_error_clear(&err);
    free(name);
    return res;
}

/* ---- release ------------------------------------------------------------------------------------
 */

/* Whether the directory finalizer must come off r before it is released:
 * the Volume keeps its directory (Retain), or the node is gone, so no agent
 * will ever remove it (README.md "A node that never returns"). */
static bool strip_dir_finalizer(vol_app *a, const claim_resv *r, bool retain)
{
    if (!rec_has_finalizer(r->obj, VOL_DIR_FINALIZER))
        return false;
    if (retain)
        return true;
    const char *node = rec_obj_label(r->obj, REC_LABEL_NODE);
    json_object *n = NULL;
    if (!node || !inf_has_synced(a->nodes) || store_get(a->nodes_store, node, &n) == KC_OK) {
        store_obj_put(n);
        return false;
    }
    return true;
}

/* Release every Reservation of the claim whose time has come (all of them,
 * or all but keep). retain: their directories stay. *wait: seconds until the
 * next one may go (0: none). */
static ctl_result release(vol_app *a, const char *uid, const claim_held *h, const claim_resv *keep,
                          bool retain, int64_t now, double *wait, int *n_released)
{
    *wait = 0;
    for (size_t i = 0; i < h->n; i++) {
        const claim_resv *r = &h->v[i];
        if (r == keep || !r->name)
            continue;
        bool due = !r->valid || vol_release_due(r->until, now);
        if ((due || rec_obj_is_deleting(r->obj)) && strip_dir_finalizer(a, r, retain)) {
            kc_ref ref = vol_resv_ref;
            ref.name = r->name;
            kc_error err = {0};
            int rc = rec_ensure_finalizer(a->client, &ref, r->obj, VOL_DIR_FINALIZER, false, NULL,
                                          NULL, &err);
            ctl_result res = rc == KC_OK || rc == KC_ERR_NOT_FOUND ? ctl_done()
                             : rc == KC_ERR_CONFLICT
                                 ? ctl_requeue()
                                 : ctl_error(rc, "keeping the directory of %s: %s", r->name,
                                             err.message ? err.message : kc_strerror(rc));
            kc_error_clear(&err);
            if (res.outcome != CTL_DONE)
                return res;
        }
        if (rec_obj_is_deleting(r->obj))
            continue;
        if (!due) {
            double w = (double)(r->until + VOL_ADMIT_GRACE + 1 - now);
            *wait = *wait == 0 || w < *wait ? w : *wait;
            continue;
        }
        kc_error err = {0};
        bool released = false;
        int rc = rec_reserve_release(a->client, r->name, uid, &released, &err);
        if (n_released && released)
            (*n_released)++;
        if (rc != KC_OK) {
            ctl_result res = ctl_error(rc, "releasing Reservation %s: %s", r->name,
                                       err.message ? err.message : kc_strerror(rc));
            kc_error_clear(&err);
            return res;
        }
    }
    return ctl_done();
}

/* ---- the reconcile ------------------------------------------------------------------------------
 */

static ctl_result claim_reconcile(const ctl_ctx *ctx, const char *namespace_, const char *name,
                                  void *user)
{
    (void)ctx;
    vol_app *a = user;
    if (!inf_has_synced(a->pools) || !inf_has_synced(a->resv) || !inf_has_synced(a->volumes) ||
        !inf_has_synced(a->pvs) || !inf_has_synced(a->pvcs) || !inf_has_synced(a->nodes))
        return ctl_requeue_after(0.1);
    json_object *vol = NULL;
    int rc = store_get_in(a->volumes_store, namespace_, name, &vol);
    if (rc == KC_ERR_NOMEM)
        return ctl_error(KC_ERR_NOMEM, "out of memory");
    if (rc != KC_OK)
        return ctl_done();
    const char *uid = rec_obj_str(vol, "metadata.uid");
    if (uid && rec_stale_check(a->stale, uid, rec_obj_str(vol, "metadata.resourceVersion"))) {
        store_obj_put(vol); /* our newer write is on its way and enqueues the Volume */
        return ctl_done();
    }
    int64_t now = (int64_t)time(NULL);
    claim_held h;
    if (!uid || (rc = claim_held_of(a, uid, &h)) != KC_OK) {
        store_obj_put(vol);
        return ctl_error(uid ? rc : KC_ERR_DECODE, "reading the Reservation cache");
    }
    kc_ref ref = vol_volumes_ref;
    ref.namespace_ = namespace_;
    ref.name = name;
    kc_error err = {0};
    ctl_result res = ctl_done();
    double wait = 0;

    if (rec_obj_is_deleting(vol)) {
        vol_wait_remove(a, uid);
        vol_admitted_forget(a, uid);
        bool gone = false;
        char *why = NULL;
        rc = vol_pv_teardown(a, vol, &gone, &why);
        if (rc != KC_OK) {
            res = ctl_error(rc, "deleting the PersistentVolume and its claim: %s",
                            why ? why : kc_strerror(rc));
            free(why);
            goto out;
        }
        free(why);
        if (!gone) {
            res = ctl_requeue_after(VOL_TEARDOWN_RECHECK); /* the PV's events come sooner */
            goto out;
        }
        res = release(a, uid, &h, NULL, vol_retains(vol), now, &wait, NULL);
        if (res.outcome == CTL_DONE && wait > 0) {
            res = ctl_requeue_after(wait); /* rule 4: not before deadline + grace */
        } else if (res.outcome == CTL_DONE) {
            rc = rec_ensure_finalizer(a->client, &ref, vol, REC_FINALIZER, false, NULL, NULL, &err);
            if (rc == KC_ERR_CONFLICT)
                res = ctl_requeue();
            else if (rc != KC_OK && rc != KC_ERR_NOT_FOUND)
                res = ctl_error(rc, "removing the finalizer: %s",
                                err.message ? err.message : kc_strerror(rc));
        }
        goto out;
    }
    bool sent = false;
    rc = rec_ensure_finalizer(a->client, &ref, vol, REC_FINALIZER, true, NULL, &sent, &err);
    if (rc == KC_OK && sent)
        rec_stale_note(a->stale, uid, rec_obj_str(vol, "metadata.resourceVersion"));
    if (rc != KC_OK || sent) {
        res = rc == KC_OK             ? ctl_done()
              : rc == KC_ERR_CONFLICT ? ctl_requeue()
                                      : ctl_error(rc, "adding the finalizer: %s",
                                                  err.message ? err.message : kc_strerror(rc));
        goto out;
    }
    vol_want w;
    char *why = NULL;
    rc = want_of(vol, &w, &why);
    if (rc == KC_ERR_INVALID_ARG) {
        res = pending(a, vol, VOL_REASON_INVALID, why, 0);
        goto out;
    } else if (rc != KC_OK) {
        res = ctl_error(rc, "out of memory");
        goto out;
    }
    /* Placed: the valid Reservation status names, else the first. */
    const char *status_pool = rec_obj_str(vol, "status.pool");
    const claim_resv *keep = NULL;
    for (size_t i = 0; i < h.n; i++) {
        const claim_resv *r = &h.v[i];
        if (!r->valid || rec_obj_is_deleting(r->obj))
            continue;
        if (!keep || (status_pool && !strcmp(r->pool, status_pool)))
            keep = r;
    }
    res = release(a, uid, &h, keep, false, now, &wait, NULL); /* invalid ones, and a second one */
    if (res.outcome != CTL_DONE)
        goto out;
    if (keep) {
        vol_wait_remove(a, uid);
        vol_admitted_forget(a, uid);
        json_object *pool = NULL;
        store_get(a->pools_store, keep->pool, &pool);
        res = placed(a, vol, &w, keep->pool, pool, keep->obj);
        store_obj_put(pool);
        if (res.outcome == CTL_DONE && wait > 0)
            res = ctl_requeue_after(wait);
        goto out;
    }
    pool_pick pick;
    rc = choose_pool(a, uid, &w, &pick);
    if (rc != KC_OK) {
        free(pick.message);
        store_obj_put(pick.pool);
        res = ctl_error(rc, "choosing a pool: %s", kc_strerror(rc));
        goto out;
    }
    if (!pick.pool) { /* taken by pending */
        vol_wait_remove(a, uid);
        res = pending(a, vol, pick.reason, pick.message, VOL_RECHECK_MAX);
        goto out;
    }
    free(pick.message);
    int64_t until = 0;
    json_object *pool = pick.pool;
    const char *pname = rec_obj_str(pool, "metadata.name");
    if (vol_rejected_take(a, uid, pname)) {
        /* The pool's own reconcile found no room though our cache of it
         * still shows some: wait for the pool to change. */
        char *msg = NULL;
        rc = rec_msg(&msg, "StoragePool %s has fewer than %lld bytes free; waiting for space",
                     pname, (long long)w.size);
        res = rc == KC_OK ? pending(a, vol, VOL_REASON_INSUFFICIENT, msg, VOL_RECHECK_MAX)
                          : ctl_error(rc, "out of memory");
        store_obj_put(pool);
        goto out;
    }
    res = admission(a, vol, &w, pool, now, &until);
    if (res.outcome == CTL_DONE && until)
        res = reserve(a, vol, &w, pool, until);
    store_obj_put(pool);
out:
    kc_error_clear(&err);
    claim_held_free(&h);
    store_obj_put(vol);
    return res;
}

/* ---- triggers and setup
 * --------------------------------------------------------------------------- */

static int resv_to_claim(json_object *obj, ctl_keys *out, void *user)
{
    (void)user;
    const char *kind = rec_obj_str(obj, "spec.claim.kind");
    const char *ns = rec_obj_str(obj, "spec.claim.namespace");
    const char *name = rec_obj_str(obj, "spec.claim.name");
    if (!kind || strcmp(kind, VOL_KIND) || !ns || !name)
        return KC_OK;
    return ctl_keys_add(out, ns, name);
}

/* A pool changed: the Volumes placed nowhere yet may fit now. */
static int pool_to_waiting(json_object *obj, ctl_keys *out, void *user)
{
    (void)obj;
    vol_app *a = user;
    char **keys = NULL;
    size_t n = 0;
    int rc = store_index_keys(a->volumes_store, VOL_IDX_WAITING, "", &keys, &n);
    for (size_t i = 0; rc == KC_OK && i < n; i++) {
        char *slash = strchr(keys[i], '/');
        if (!slash)
            continue;
        *slash = '\0';
        rc = ctl_keys_add(out, keys[i], slash + 1);
        *slash = '/';
    }
    store_keys_free(keys, n);
    return rc;
}

static int index_waiting(json_object *obj, store_values *out, void *user)
{
    (void)user;
    const char *pool = rec_obj_str(obj, "status.pool");
    return pool && *pool ? KC_OK : store_values_add(out, "");
}

/* ---- the orphan sweep ---------------------------------------------------------------------------
 *
 * A Volume's Reservations are released by the Volume's own reconcile while
 * it is deleted. One whose Reservation this process's cache did not show yet
 * (made a moment before by this replica or the previous leader) loses its
 * finalizer without it: the Reservation is left behind, holding bytes and a
 * directory. Every Reservation is looked at when it changes and every
 * VOL_RESV_RESYNC seconds; one whose Volume is not cached, and that the API
 * server says is gone (or of another uid), is released as the Volume's
 * reconcile would have done: when due (rule 4), its directory removed by the
 * node agent when VOL_LABEL_RECLAIM says Delete, kept otherwise (README).
 */

/* Every Reservation again, every VOL_RESV_RESYNC s (a key of its own: an
 * informer resync would also reach the pool and Volume handlers). */
static ctl_result sweep_all(vol_app *a)
{
    char **keys = NULL;
    size_t n = 0;
    int rc = store_list_keys(a->resv_store, &keys, &n);
    for (size_t i = 0; rc == KC_OK && i < n; i++)
        rc = ctl_enqueue(a->sweep_ctl, NULL, keys[i]);
    store_keys_free(keys, n);
    return rc == KC_OK ? ctl_requeue_after(VOL_RESV_RESYNC)
                       : ctl_error(rc, "queueing the Reservations: %s", kc_strerror(rc));
}

static ctl_result sweep_reconcile(const ctl_ctx *ctx, const char *namespace_, const char *name,
                                  void *user)
{
    (void)ctx;
    (void)namespace_;
    vol_app *a = user;
    if (!inf_has_synced(a->resv) || !inf_has_synced(a->volumes) || !inf_has_synced(a->nodes))
        return ctl_requeue_after(0.5);
    if (!strcmp(name, VOL_SWEEP_ALL))
        return sweep_all(a);
    json_object *obj = NULL;
    int rc = store_get(a->resv_store, name, &obj);
    if (rc == KC_ERR_NOT_FOUND)
        return ctl_done();
    if (rc != KC_OK)
        return ctl_error(rc, "reading the Reservation cache: %s", kc_strerror(rc));
    const char *kind = rec_obj_str(obj, "spec.claim.kind");
    const char *cns = rec_obj_str(obj, "spec.claim.namespace");
    const char *cname = rec_obj_str(obj, "spec.claim.name");
    const char *uid = rec_obj_str(obj, "spec.claim.uid");
    const char *wns = a->env.watch_namespace;
    ctl_result res = ctl_done();
    if (!kind || strcmp(kind, VOL_KIND) || !cns || !cname || !uid ||
        (wns && *wns && strcmp(wns, cns)))
        goto out;
    json_object *vol = NULL;
    rc = store_get_in(a->volumes_store, cns, cname, &vol);
    const char *vuid = rc == KC_OK ? rec_obj_str(vol, "metadata.uid") : NULL;
    bool cached = vuid && !strcmp(vuid, uid);
    store_obj_put(vol);
    if (rc != KC_OK && rc != KC_ERR_NOT_FOUND) {
        res = ctl_error(rc, "reading the Volume cache: %s", kc_strerror(rc));
        goto out;
    }
    if (cached)
        goto out; /* its reconcile owns it */

    /* The cache may lag: only the API server can say the Volume is gone. */
    kc_ref ref = vol_volumes_ref;
    ref.namespace_ = cns;
    ref.name = cname;
    kc_error err = {0};
    vol = NULL;
    rc = kc_get(a->client, &ref, &vol, &err);
    vuid = rc == KC_OK ? rec_obj_str(vol, "metadata.uid") : NULL;
    bool gone = rc == KC_ERR_NOT_FOUND || (rc == KC_OK && (!vuid || strcmp(vuid, uid) != 0));
    json_object_put(vol);
    if (rc != KC_OK && rc != KC_ERR_NOT_FOUND) {
        res = ctl_error(rc, "reading Volume %s/%s: %s", cns, cname,
                        err.message ? err.message : kc_strerror(rc));
        kc_error_clear(&err);
        goto out;
    }
    kc_error_clear(&err);
    if (!gone)
        goto out;
    claim_resv r = {0};
    claim_resv_of(obj, &r);
    claim_held h = {.objs = NULL, .n = 1, .v = &r};
    /* Delete only when the label says so: a Reservation made before the label
     * existed keeps its directory (a leak a person can see, not data lost). */
    const char *policy = rec_obj_label(obj, VOL_LABEL_RECLAIM);
    bool retain = !policy || strcmp(policy, "Delete") != 0;
    double wait = 0;
    int released = 0;
    res = release(a, uid, &h, NULL, retain, (int64_t)time(NULL), &wait, &released);
    if (res.outcome == CTL_DONE && wait > 0)
        res = ctl_requeue_after(wait); /* rule 4: not before its deadline + grace */
    else if (released)
        a->env.log(&a->env, REC_LOG_INFO, VOL_RESV_CONTROLLER,
                   "released the reservation of a volume that no longer exists",
                   REC_KV("reservation", name, "namespace", cns, "volume", cname, "pool",
                          r.pool ? r.pool : ""));
out:
    store_obj_put(obj);
    return res;
}

int vol_claim_setup(vol_app *a, const rec_env *env)
{
    inf_opts vopts = {.store_mode = INF_STORE_COMPACT};
    /* --namespace: only the Volumes of that namespace. */
    kc_ref vref = vol_volumes_ref;
    vref.namespace_ = env->watch_namespace && *env->watch_namespace ? env->watch_namespace : NULL;
    int rc = inf_factory_get(env->factory, &vref, &vopts, &a->volumes);
    if (rc != KC_OK)
        return rc;
    a->volumes_store = inf_store(a->volumes);
    if ((rc = store_add_index(a->volumes_store, VOL_IDX_WAITING, index_waiting, NULL)) != KC_OK ||
        (rc = store_add_index(a->resv_store, VOL_IDX_CLAIM, store_index_field,
                              (void *)"spec.claim.uid")) != KC_OK)
        return rc;
    if ((rc = rec_env_new_controller(env, VOL_CLAIM_CONTROLLER, claim_reconcile, a,
                                     &a->claim_ctl)) != KC_OK ||
        (rc = ctl_watch_for(a->claim_ctl, a->volumes)) != KC_OK ||
        (rc = ctl_watch_map(a->claim_ctl, a->resv, resv_to_claim, a)) != KC_OK ||
        (rc = ctl_watch_map(a->claim_ctl, a->pools, pool_to_waiting, a)) != KC_OK)
        return rc;
    if ((rc = rec_env_new_controller(env, VOL_RESV_CONTROLLER, sweep_reconcile, a,
                                     &a->sweep_ctl)) != KC_OK ||
        (rc = ctl_watch_for(a->sweep_ctl, a->resv)) != KC_OK ||
        (rc = ctl_enqueue_on_start(a->sweep_ctl, NULL, VOL_SWEEP_ALL)) != KC_OK)
        return rc;
    return KC_OK;
}
