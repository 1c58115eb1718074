/*
 * vol_admit - admissions batched per pool.
 *
 * A Volume that needs bytes of a pool does not write the pool's ledger
 * itself (with a storm of Volumes on one pool every such compare-and-swap
 * but one would fail). It waits in the pool's list here and wakes the pool;
 * the pool's reconcile admits every waiter that fits, in the order they came,
 * in the one status write it makes anyway, then wakes the admitted Volumes,
 * which create their Reservations. Only this process's waiters are admitted
 * by this process; another replica admits its own, and the compare-and-swap
 * keeps them from counting one Volume twice (an entry per uid).
 *
 * What this process admitted is remembered (uid -> pool, deadline) so the
 * Volume's reconcile need not wait for its cache to show the pool's write.
 *
 * Threading: everything under a->mu; never held across a request.
 */
#include "vol_internal.h"

#include "kc_error.h"
#include "rec_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct waiter {
    char *uid, *ns, *name;
    int64_t size;
} waiter;

typedef struct pool_wait {
    char *pool; /* the map's key */
    waiter *v;
    size_t n, cap;
} pool_wait;

typedef struct admitted {
    char *uid; /* the map's key */
    char *pool;
    int64_t until;
} admitted;

static void waiter_clear(waiter *w)
{
    free(w->uid);
    free(w->ns);
    free(w->name);
    memset(w, 0, sizeof *w);
}

static void pool_wait_free(pool_wait *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        waiter_clear(&p->v[i]);
    free(p->v);
    free(p->pool);
    free(p);
}

static void admitted_free(admitted *x)
{
    if (x) {
        free(x->uid);
        free(x->pool);
        free(x);
    }
}

/* Remove uid from every pool's list but keep_pool's (NULL: all). a->mu held. */
static void unwait_locked(vol_app *a, const char *uid, const char *keep_pool)
{
    size_t pos = 0;
    void *v;
    while (inf_map_next(&a->waiting, &pos, NULL, &v)) {
        pool_wait *p = v;
        if (keep_pool && !strcmp(p->pool, keep_pool))
            continue;
        for (size_t i = 0; i < p->n; i++) {
            if (strcmp(p->v[i].uid, uid))
                continue;
            waiter_clear(&p->v[i]);
            memmove(&p->v[i], &p->v[i + 1], (p->n - i - 1) * sizeof *p->v);
            p->n--;
            break;
        }
    }
}

int vol_wait_add(vol_app *a, const char *pool, const char *uid, const char *ns, const char *name,
                 int64_t size)
{
    int rc = KC_OK;
    pthread_mutex_lock(&a->mu);
    unwait_locked(a, uid, pool);
    pool_wait *p = inf_map_get(&a->waiting, pool);
    if (!p) {
        p = calloc(1, sizeof *p);
        if (!p || !(p->pool = strdup(pool)) || inf_map_put(&a->waiting, p->pool, p) != KC_OK) {
            pool_wait_free(p);
            pthread_mutex_unlock(&a->mu);
            return KC_ERR_NOMEM;
        }
    }
    size_t i = 0;
    while (i < p->n && strcmp(p->v[i].uid, uid))
        i++;
    if (i == p->n) { /* new: at the end, first come first admitted */
        if (p->n == p->cap) {
            size_t cap = p->cap ? 2 * p->cap : 16;
            waiter *grown = realloc(p->v, cap * sizeof *grown);
            if (!grown)
                rc = KC_ERR_NOMEM;
            else {
                p->v = grown;
                p->cap = cap;
            }
        }
        if (rc == KC_OK) {
            waiter w = {strdup(uid), strdup(ns), strdup(name), size};
            if (!w.uid || !w.ns || !w.name) {
                waiter_clear(&w);
                rc = KC_ERR_NOMEM;
            } else {
                p->v[p->n++] = w;
            }
        }
    } else {
        p->v[i].size = size;
    }
    pthread_mutex_unlock(&a->mu);
    return rc;
}

void vol_wait_remove(vol_app *a, const char *uid)
{
    pthread_mutex_lock(&a->mu);
    unwait_locked(a, uid, NULL);
    pthread_mutex_unlock(&a->mu);
}

bool vol_admitted_get(vol_app *a, const char *uid, const char *pool, int64_t *until)
{
    pthread_mutex_lock(&a->mu);
    admitted *x = inf_map_get(&a->admitted, uid);
    bool ok = x && x->until > 0 && !strcmp(x->pool, pool);
    if (ok)
        *until = x->until;
    pthread_mutex_unlock(&a->mu);
    return ok;
}

char *vol_admitted_pool(vol_app *a, const char *uid)
{
    pthread_mutex_lock(&a->mu);
    admitted *x = inf_map_get(&a->admitted, uid);
    char *pool = x && x->until > 0 ? strdup(x->pool) : NULL;
    pthread_mutex_unlock(&a->mu);
    return pool;
}

bool vol_rejected_take(vol_app *a, const char *uid, const char *pool)
{
    pthread_mutex_lock(&a->mu);
    admitted *x = inf_map_get(&a->admitted, uid);
    bool rejected = x && x->until == VOL_REJECTED && !strcmp(x->pool, pool);
    if (rejected)
        admitted_free(inf_map_remove(&a->admitted, uid));
    pthread_mutex_unlock(&a->mu);
    return rejected;
}

void vol_admitted_forget(vol_app *a, const char *uid)
{
    pthread_mutex_lock(&a->mu);
    admitted_free(inf_map_remove(&a->admitted, uid));
    pthread_mutex_unlock(&a->mu);
}

void vol_batch_clear(vol_batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free(b->v[i].uid);
        free(b->v[i].ns);
        free(b->v[i].name);
    }
    free(b->v);
    memset(b, 0, sizeof *b);
}

static int batch_add(vol_batch *b, const waiter *w, int64_t until)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 16;
        vol_batch_item *grown = realloc(b->v, cap * sizeof *grown);
        if (!grown)
            return KC_ERR_NOMEM;
        b->v = grown;
        b->cap = cap;
    }
    vol_batch_item it = {strdup(w->uid), strdup(w->ns), strdup(w->name), until};
    if (!it.uid || !it.ns || !it.name) {
        free(it.uid);
        free(it.ns);
        free(it.name);
        return KC_ERR_NOMEM;
    }
    b->v[b->n++] = it;
    return KC_OK;
}

/* Whether w's Volume is still in the cache, with its uid and not deleting
 * (lock order: a->mu, then the store's lock). */
static bool still_wanted(vol_app *a, const waiter *w)
{
    size_t len = strlen(w->ns) + strlen(w->name) + 2;
    char *key = malloc(len);
    if (!key)
        return true; /* keep it; the next round looks again */
    snprintf(key, len, "%s/%s", w->ns, w->name);
    json_object *vol = NULL;
    bool ok = store_get(a->volumes_store, key, &vol) == KC_OK;
    free(key);
    if (ok) {
        const char *uid = rec_obj_str(vol, "metadata.uid");
        ok = uid && !strcmp(uid, w->uid) && !rec_obj_is_deleting(vol);
    }
    store_obj_put(vol);
    return ok;
}

int vol_admit_batch(vol_app *a, const char *pool, vol_ledger *l, int64_t now, vol_batch *in,
                    vol_batch *out)
{
    memset(in, 0, sizeof *in);
    memset(out, 0, sizeof *out);
    int rc = KC_OK;
    pthread_mutex_lock(&a->mu);
    pool_wait *p = inf_map_get(&a->waiting, pool);
    for (size_t i = 0; p && rc == KC_OK && i < p->n; i++) {
        const waiter *w = &p->v[i];
        if (!still_wanted(a, w)) { /* deleted meanwhile: never admitted */
            waiter_clear(&p->v[i]);
            memmove(&p->v[i], &p->v[i + 1], (p->n - i - 1) * sizeof *p->v);
            p->n--;
            i--;
            continue;
        }
        vol_admit_result result;
        bool changed = false;
        rc = vol_ledger_admit(l, w->uid, w->size, now, &result, &changed);
        if (rc != KC_OK)
            break;
        if (result == VOL_ADMITTED || result == VOL_ADMITTED_AGAIN)
            rc = batch_add(in, w, vol_ledger_find(l, w->uid)->until);
        else if (result == VOL_NO_ROOM)
            rc = batch_add(out, w, 0);
        else
            break; /* full, or unknown: the rest wait for the next round */
    }
    pthread_mutex_unlock(&a->mu);
    return rc;
}

void vol_admit_commit(vol_app *a, const char *pool, const vol_batch *in, const vol_batch *out)
{
    pthread_mutex_lock(&a->mu);
    for (size_t k = 0; k < in->n + out->n; k++) {
        const vol_batch_item *it = k < in->n ? &in->v[k] : &out->v[k - in->n];
        unwait_locked(a, it->uid, NULL);
        admitted *x = inf_map_get(&a->admitted, it->uid);
        if (!x) {
            x = calloc(1, sizeof *x);
            if (x && (x->uid = strdup(it->uid)) && inf_map_put(&a->admitted, x->uid, x) == KC_OK) {
                /* in the map */
            } else {
                admitted_free(x);
                x = NULL; /* the Volume finds its admission in the pool's cache instead */
            }
        }
        if (x) {
            char *p = strdup(pool);
            if (p) {
                free(x->pool);
                x->pool = p;
                x->until = k < in->n ? it->until : VOL_REJECTED;
            } else {
                admitted_free(inf_map_remove(&a->admitted, it->uid));
            }
        }
    }
    pthread_mutex_unlock(&a->mu);
    for (size_t i = 0; i < in->n; i++)
        ctl_enqueue(a->claim_ctl, in->v[i].ns, in->v[i].name);
    for (size_t i = 0; i < out->n; i++)
        ctl_enqueue(a->claim_ctl, out->v[i].ns, out->v[i].name);
}

void vol_admit_close(vol_app *a)
{
    size_t pos = 0;
    void *v;
    while (inf_map_next(&a->waiting, &pos, NULL, &v))
        pool_wait_free(v);
    inf_map_close(&a->waiting);
    pos = 0;
    while (inf_map_next(&a->admitted, &pos, NULL, &v))
        admitted_free(v);
    inf_map_close(&a->admitted);
}
